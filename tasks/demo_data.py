"""A synthetic shop in the raw data contract, for the demo and the tests.

Users have stable tastes (two favourite subcategories and a favourite brand), item
popularity is power-law, and sessions run a view -> click -> cart -> purchase funnel, so a
personalised model has real signal to beat popularity with. Events are generated one
day at a time with numpy, so memory stays bounded by one day's events.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nightrecs.models.progress import progress
from nightrecs.tasks import layout
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)

# top category -> subcategory -> product nouns
TREE: dict[str, dict[str, list[str]]] = {
    "Shoes": {
        "Running": ["running shoe", "trail runner", "racing flat"],
        "Hiking": ["hiking boot", "approach shoe", "waterproof trail shoe"],
        "Casual": ["canvas sneaker", "leather loafer", "slip-on"],
    },
    "Electronics": {
        "Headphones": ["wireless headphones", "noise-cancelling earbuds", "studio headphones"],
        "Phones": ["smartphone", "phone case", "fast charger"],
        "Cameras": ["mirrorless camera", "action camera", "prime lens"],
    },
    "Home": {
        "Kitchen": ["chef's knife", "cast iron skillet", "burr coffee grinder"],
        "Bedding": ["duvet cover", "memory foam pillow", "weighted blanket"],
        "Lighting": ["desk lamp", "floor lamp", "LED light strip"],
    },
    "Sports": {
        "Yoga": ["yoga mat", "cork yoga block", "yoga strap"],
        "Cycling": ["bike helmet", "cycling jersey", "rechargeable bike light"],
        "Fitness": ["adjustable dumbbell", "kettlebell", "resistance band set"],
    },
    "Beauty": {
        "Skincare": ["vitamin C serum", "daily moisturizer", "mineral sunscreen"],
        "Hair": ["argan oil shampoo", "ionic hair dryer", "repair conditioner"],
    },
    "Books": {
        "Fiction": ["mystery novel", "epic fantasy novel", "psychological thriller"],
        "Cooking": ["sourdough cookbook", "weeknight dinners cookbook"],
        "Science": ["popular astronomy book", "history of physics"],
    },
    "Toys": {
        "Building": ["building blocks set", "marble run kit"],
        "Puzzles": ["1000-piece jigsaw puzzle", "wooden brain teaser"],
    },
    "Garden": {
        "Tools": ["pruning shears", "expandable garden hose", "hand trowel"],
        "Plants": ["herb seed kit", "self-watering planter"],
    },
}
BRANDS = {
    "Shoes": ["Stridex", "Peakline", "Urbano", "Fleetfoot"],
    "Electronics": ["Sonora", "Voltix", "Lumina", "Quantro"],
    "Home": ["Hearthwell", "Casa Nova", "Brightnest", "Ironleaf"],
    "Sports": ["Zenflow", "Velocita", "Forgefit", "Summit"],
    "Beauty": ["Glowé", "Puracare", "Silkroot"],
    "Books": ["Inkwell Press", "Northwind Books", "Atlas House"],
    "Toys": ["Brickwise", "Playforge", "Tinker & Co"],
    "Garden": ["Greenthumb", "Rootstock", "Fernway"],
}
BASE_PRICE = {"Shoes": 90, "Electronics": 160, "Home": 45, "Sports": 40, "Beauty": 22,
              "Books": 18, "Toys": 30, "Garden": 25}
ADJECTIVES = ["Lightweight", "Premium", "Classic", "Pro", "Compact", "Eco", "Ultra", "Everyday"]
COLORS = ["black", "white", "navy", "forest green", "charcoal", "sand", "red", "sky blue"]
FEATURES = [
    "Built to last with reinforced seams.", "Rated highly for comfort.",
    "Designed for daily use.", "Comes with a two-year warranty.",
    "Made from recycled materials.", "A customer favourite for gifting.",
]
COUNTRIES = ["DE", "FR", "GB", "US", "ES", "IT", "NL", "SE"]
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55+"]


@dataclass(frozen=True)
class ShopSpec:
    users: int = 2000
    items: int = 1000
    days: int = 30
    seed: int = 7
    end_date: str | None = None  # first day with no events; default: today (UTC)
    sessions_per_user_day: float = 0.25
    inactive_users: float = 0.1  # share of users with no events (cold start)


def _capitalize(words: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words.split())


def _subcategories() -> list[tuple[str, str]]:
    return [(top, sub) for top, subs in TREE.items() for sub in subs]


def make_catalog(spec: ShopSpec, rng: np.random.Generator) -> pd.DataFrame:
    subcats = _subcategories()
    sub_idx = rng.integers(0, len(subcats), spec.items)
    rows = []
    for i, s in enumerate(sub_idx):
        top, sub = subcats[s]
        noun = TREE[top][sub][rng.integers(len(TREE[top][sub]))]
        brand = BRANDS[top][rng.integers(len(BRANDS[top]))]
        adj = ADJECTIVES[rng.integers(len(ADJECTIVES))]
        color = COLORS[rng.integers(len(COLORS))]
        series = f"{chr(65 + rng.integers(26))}{rng.integers(1, 10)}"
        rows.append({
            "item_id": f"i{i:06d}",
            "title": f"{brand} {adj} {_capitalize(noun)} {series}",
            "description": (f"A {adj.lower()} {noun} from {brand} in {color}. "
                            f"{FEATURES[rng.integers(len(FEATURES))]}"),
            "category": f"{top} > {sub}",
            "brand": brand,
            "price": round(float(BASE_PRICE[top] * rng.lognormal(0, 0.4)), 2),
            "in_stock": None if rng.random() < 0.05 else bool(rng.random() > 0.04),
        })
    cat = pd.DataFrame(rows)
    cat["updated_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    cat["in_stock"] = cat["in_stock"].astype("boolean")
    return cat


def make_users(spec: ShopSpec, rng: np.random.Generator, start: dt.date) -> pd.DataFrame:
    signup_days = rng.integers(0, 365, spec.users)
    return pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in range(spec.users)],
        "signup_at": pd.Timestamp(start, tz="UTC") - pd.to_timedelta(signup_days, unit="D"),
        "country": rng.choice(COUNTRIES, spec.users),
        "age_band": rng.choice(AGE_BANDS, spec.users),
    })


class _Shop:
    """Per-user tastes and per-item weights, fixed for the whole history."""

    def __init__(self, spec: ShopSpec, catalog: pd.DataFrame, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.item_ids = catalog["item_id"].to_numpy()
        subs = sorted(catalog["category"].unique())
        self.sub_of_item = catalog["category"].map({s: k for k, s in enumerate(subs)}).to_numpy()
        self.n_sub = len(subs)
        pop = rng.pareto(1.2, len(catalog)) + 1.0  # power-law item popularity
        self.items_by_sub = [np.flatnonzero(self.sub_of_item == k) for k in range(self.n_sub)]
        self.p_by_sub = [pop[ix] / pop[ix].sum() for ix in self.items_by_sub]
        n = spec.users
        self.taste = np.stack([rng.integers(0, self.n_sub, n), rng.integers(0, self.n_sub, n)], 1)
        self.rate = spec.sessions_per_user_day * rng.lognormal(0, 0.8, n)
        self.rate[rng.random(n) < spec.inactive_users] = 0.0
        self.queries = [TREE[c.split(" > ")[0]][c.split(" > ")[1]] for c in subs]

    def day(self, day: dt.date, first_event: int) -> pd.DataFrame:
        rng, n = self.rng, self.spec.users
        n_sess = rng.poisson(self.rate)
        s_user = np.repeat(np.arange(n), n_sess)
        ns = len(s_user)
        if ns == 0:
            return pd.DataFrame()
        pick = np.where(rng.random(ns) < 0.65, 0, 1)
        s_sub = np.where(rng.random(ns) < 0.85, self.taste[s_user, pick],
                         rng.integers(0, self.n_sub, ns))
        s_start = rng.uniform(0, 86400 - 3600, ns)
        n_views = 1 + rng.poisson(2.5, ns)
        v_sess = np.repeat(np.arange(ns), n_views)
        v_item = np.empty(len(v_sess), dtype=np.int64)
        v_sub = s_sub[v_sess]
        for k in range(self.n_sub):
            rows = np.flatnonzero(v_sub == k)
            if len(rows) and len(self.items_by_sub[k]):
                v_item[rows] = rng.choice(self.items_by_sub[k], len(rows), p=self.p_by_sub[k])
            elif len(rows):
                v_item[rows] = rng.integers(0, len(self.item_ids), len(rows))
        v_offset = np.concatenate([np.arange(m) for m in n_views]) * 90.0 + rng.uniform(0, 60, len(v_sess))
        # funnel: each stage is a subset of the previous one
        click = rng.random(len(v_sess)) < 0.35
        cart = click & (rng.random(len(v_sess)) < 0.3)
        buy = cart & (rng.random(len(v_sess)) < 0.5)
        rate_it = buy & (rng.random(len(v_sess)) < 0.2)
        stages = [("view", np.ones_like(click), 0), ("click", click, 5),
                  ("add_to_cart", cart, 20), ("purchase", buy, 40), ("rating", rate_it, 3600)]
        parts = []
        for name, mask, delay in stages:
            ix = np.flatnonzero(mask)
            parts.append(pd.DataFrame({
                "v": ix, "event_type": name, "delay": float(delay),
            }))
        ev = pd.concat(parts, ignore_index=True)
        sess = v_sess[ev["v"]]
        day_start = pd.Timestamp(day, tz="UTC")
        seconds = s_start[sess] + v_offset[ev["v"]] + ev["delay"].to_numpy()
        seconds = np.minimum(seconds, 86399.0)
        ev_type = ev["event_type"].to_numpy()
        value = np.full(len(ev), np.nan)
        value[ev_type == "purchase"] = 1.0
        is_rating = ev_type == "rating"
        value[is_rating] = np.clip(np.round(rng.normal(4.2, 0.8, is_rating.sum())), 1, 5)
        has_query = rng.random(ns) < 0.35
        first_view = (ev_type == "view") & (np.r_[True, v_sess[1:] != v_sess[:-1]][ev["v"]])
        query = np.full(len(ev), None, dtype=object)
        for r in np.flatnonzero(first_view & has_query[sess]):
            nouns = self.queries[s_sub[sess[r]]]
            query[r] = nouns[rng.integers(len(nouns))]
        out = pd.DataFrame({
            "user_id": np.char.add("u", np.char.zfill(s_user[sess].astype(str), 6)),
            "item_id": self.item_ids[v_item[ev["v"]]],
            "event_type": ev_type,
            "ts": day_start + pd.to_timedelta(seconds, unit="s"),
            "value": value,
            "session_id": np.char.add(f"s{day:%Y%m%d}-", sess.astype(str)),
            "query": query,
        }).sort_values("ts", kind="stable", ignore_index=True)
        out.insert(0, "event_id", [f"e{first_event + i:010d}" for i in range(len(out))])
        return out


def generate(root: Root, spec: ShopSpec) -> dict:
    """Write catalog, users and daily event partitions under ``root``; returns counts."""
    rng = np.random.default_rng(spec.seed)
    end = dt.date.fromisoformat(spec.end_date) if spec.end_date else dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=spec.days)
    catalog = make_catalog(spec, rng)
    users = make_users(spec, rng, start)
    root.write_parquet(layout.raw_file("catalog"), catalog)
    root.write_parquet(layout.raw_file("users"), users)
    shop = _Shop(spec, catalog, rng)
    n_events = 0
    for d in progress(range(spec.days), desc="demo events", unit="day"):
        day = start + dt.timedelta(days=d)
        events = shop.day(day, n_events)
        if events.empty:
            continue
        root.write_parquet(layout.raw_events_file(day.isoformat()), events)
        n_events += len(events)
    log.info("demo shop: %d items, %d users, %d events, %s .. %s",
             len(catalog), len(users), n_events, start, end - dt.timedelta(days=1))
    return {"items": len(catalog), "users": len(users), "events": n_events,
            "first_day": start.isoformat(), "run_date": end.isoformat()}
