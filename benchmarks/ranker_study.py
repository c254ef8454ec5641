"""The ranker's learning on many MovieLens cutoffs: ways to fit it, side by side on the same examples.

    python benchmarks/ranker_study.py                    # 62 cutoffs 2000-2016, about 60 min on 2 cores
    python benchmarks/ranker_study.py --start 2005-01-01 --end 2006-01-01 --step-days 28 --rankers "shipped (per user),pooled rows"

The quality study runs whole nights and so affords 10 cutoffs (80 warm users, an interval
of about +-0.035). This runs only the hybrid, in process, on cutoffs spread over the years,
so ranker choices can be told apart. Per cutoff the hybrid gathers its learning set from the
weeks before (``Hybrid.learning_set``, as ``fit`` does), each variant fits a ranker on that
same set (a variant of the hybrid's own settings, such as pruned co-occurrence, gathers its
own set from the same weeks; by default only the ranker variants run), and the lists of the users active in the next ``--horizon-days`` days (warm users)
are scored as in ``quality_study.py``; EASE and recent popularity on the same users for
scale. The two-tower model is left out (its features stay unknown, as in every learning
window before its training cut), so the figures are the ranker's, not a night's. Prints a
Markdown table with paired bootstrap 95% intervals; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import logging
from multiprocessing import Pool
from typing import Callable

import numpy as np

from nightrecs.models.data import DISLIKE, Sequences, interactions, token
from nightrecs.models.evaluation import paired_bootstrap, per_user
from nightrecs.models.hybrid import Hybrid, LearningSet
from nightrecs.models.ranking import Ranker
from nightrecs.models.seqrec import ModelConfig, Recommender, TrainConfig
from quality_study import K, Interactions, cutoff_at, ease, movielens, recent_popularity

log = logging.getLogger("ranker_study")

def shipped(s: LearningSet) -> Ranker:
    return Ranker().fit(s.features, s.y, s.groups)


# name: (the hybrid's settings, which gather their own learning set unless default; the ranker)
VARIANTS: dict[str, tuple[dict, Callable[[LearningSet], Ranker]]] = {
    "shipped (per user)": ({}, shipped),
    "pooled rows": ({}, lambda s: Ranker().fit(s.features, s.y)),
    "per user 100 trees of 15 leaves": ({}, lambda s: Ranker(trees=100, leaves=15).fit(s.features, s.y, s.groups)),
    "per user 20 trees of 4 leaves": ({}, lambda s: Ranker(trees=20, leaves=4).fit(s.features, s.y, s.groups)),
    "co-occurrence 100 neighbours": ({"co_neighbours": 100}, shipped),
    "co-occurrence 300 neighbours": ({"co_neighbours": 300}, shipped),
}
DEFAULT_RANKERS = list(VARIANTS)[:4]
EASE, RECENT = "ease (l2=200)", "recent popularity (90 days)"  # the baselines, on the same users
NEVER = 2**62  # the model's training cut: never reached, so its features stay unknown

_DATA: Interactions | None = None


def _data() -> Interactions:
    global _DATA
    if _DATA is None:
        _DATA = movielens()
    return _DATA


def one_cutoff(args: tuple[str, int, float, list[str]]) -> dict[str, np.ndarray]:
    """Per method (the ``rankers`` named, then the baselines), the NDCG@K of each warm user
    of the cutoff on ``date``."""
    date, horizon, dislike, rankers = args
    data = _data()
    cut = cutoff_at(data, np.datetime64(date, "s"), horizon, dislike)
    if not len(cut.warm):
        return {}
    at = int(cut.date.astype("int64"))
    kinds = np.where(data.rating > dislike, token("rating"), DISLIKE)
    past = Sequences.from_events(data.user, data.item, kinds, data.ts.astype("int64"), data.n_users).before(at)
    text = np.random.default_rng(0).normal(size=(data.n_items, 8)).astype(np.float32)
    rec = Recommender(ModelConfig(n_items=data.n_items, text_dim=8, dim=16, layers=1, max_len=12),
                      TrainConfig(epochs=1), text)
    seen = interactions(past, data.n_items, positive=False)
    truth = cut.truth[cut.warm]
    hybrids: dict[tuple, tuple[Hybrid, LearningSet]] = {}
    out = {}
    for name in rankers:
        settings, fit = VARIANTS[name]
        key = tuple(sorted(settings.items()))
        if key not in hybrids:
            hybrid = Hybrid(rec, data.n_items, model_until=NEVER, **settings)
            learning = hybrid.learning_set(past, at)
            hybrids[key] = hybrid.update(past, at), learning
            log.info("%s %s: %d warm users, %d learning rows in %d windows", date, settings or "", len(cut.warm),
                     len(learning.y), learning.windows)
        hybrid, learning = hybrids[key]
        hybrid.ranker = fit(learning)
        out[name] = per_user(hybrid.recommend(past, cut.warm, seen, at, K)[0], truth)["ndcg"]
    out[EASE] = per_user(ease(200.0)(cut, cut.warm), truth)["ndcg"]
    out[RECENT] = per_user(recent_popularity(90)(cut, cut.warm), truth)["ndcg"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", default="2000-01-08")
    p.add_argument("--end", default="2016-06-01")
    p.add_argument("--step-days", type=int, default=98)
    p.add_argument("--horizon-days", type=int, default=14)
    p.add_argument("--dislike-rating", type=float, default=2.0)
    p.add_argument("--rankers", default=",".join(DEFAULT_RANKERS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    if unknown := set(a.rankers.split(",")) - set(VARIANTS):
        p.error(f"--rankers: no variant named {sorted(unknown)}; the variants: {', '.join(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("nightrecs").setLevel(logging.WARNING)
    dates = np.arange(np.datetime64(a.start, "D"), np.datetime64(a.end, "D"), np.timedelta64(a.step_days, "D"))
    jobs = [(str(d), a.horizon_days, a.dislike_rating, a.rankers.split(",")) for d in dates]
    with Pool(a.workers) as pool:
        parts = [r for r in pool.imap(one_cutoff, jobs) if r]
    scores = {name: np.concatenate([r[name] for r in parts]) for name in parts[0]}
    first = next(iter(scores))
    best_baseline = max((EASE, RECENT), key=lambda n: np.nanmean(scores[n]))
    print(f"\n{len(parts)} cutoffs from {a.start} every {a.step_days} days, {len(scores[first])} warm (cutoff, user) "
          f"pairs, NDCG@{K}; intervals: paired bootstrap 95%\n")
    print(f"| method | NDCG@{K} | vs {best_baseline} | - {first} |")
    print("| --- | ---: | --- | --- |")
    for name, s in scores.items():
        d, lo, hi = paired_bootstrap(s, scores[best_baseline])
        f, flo, fhi = paired_bootstrap(s, scores[first])
        print(f"| {name} | {np.nanmean(s):.4f} | {np.nanmean(s) / np.nanmean(scores[best_baseline]):.2f}x, "
              f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] | {f:+.4f} [{flo:+.4f}, {fhi:+.4f}] |")


if __name__ == "__main__":
    main()
