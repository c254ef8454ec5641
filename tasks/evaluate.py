"""Step 8: score the run's lists on a time-based holdout, next to built-in baselines and the
champion (the run behind ``recs/LATEST``); a drop beyond the tolerance blocks publishing.

The holdout is the last ``holdout_days`` before the run date. Every method sees the users'
histories cut at its start and predicts the items each user positively touches inside it
and had not touched before. nightrecs' lists are made by the very function that makes the
published ones (``tasks/lists.py``: candidates, ranker, segment fallbacks, rules) as of the
holdout's start, for warm users (a history before it) and cold users (none) alike; the
ranker never learns from model scores on windows before the model's ``trained_until``.
With ``holdout_days <= valid_days`` the run's model never trained on the holdout (its
early stopping looked at those days). Histories keep an item's last touch only, so an item
touched before and again inside the holdout counts as new, alike for every method.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nightrecs.expectations.errors import DataQualityError
from nightrecs.models.baselines import CoOccurrence, Popularity
from nightrecs.models.data import holdout, interactions
from nightrecs.models.evaluation import paired_bootstrap, per_user, summarize
from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import IncompatibleModel, champion, load_model, model_meta, trained_until
from nightrecs.tasks.catalog import unix_seconds
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import ListInputs, load_inputs, make_lists
from nightrecs.tasks.report_html import evaluation_html
from nightrecs.tasks.reports import record
from nightrecs.tasks.storage import Root, open_root

log = logging.getLogger(__name__)

RECENT_DAYS = 7  # "recent popularity": the week before the holdout
BATCH = 512  # users scored at once by a baseline (a dense users x items block)
CO_FIT_USERS = 50_000  # the co-occurrence baseline is fitted on at most this many users' histories


class PublishBlocked(DataQualityError):
    """The run's lists score worse than the champion's beyond the tolerance."""


def list_matrix(recs: pd.DataFrame, users: list[str], item_ids: pd.Series, k: int) -> np.ndarray:
    """``(len(users), k)`` catalog rows of each user's top ``k`` (long format in, -1 padded)."""
    top = recs[recs["rank"] <= k]
    out = np.full((len(users), k), -1, np.int64)
    row = pd.Index(users).get_indexer(top["user_id"])
    out[row, top["rank"].to_numpy() - 1] = pd.Index(item_ids).get_indexer(top["item_id"])
    return out


def nightrecs_lists(root: Root, inputs: ListInputs, model_prefix: str, cfg: RunConfig, at: int,
                    users: list[str], k: int) -> np.ndarray:
    """The lists a run at ``at`` would publish with the model at ``model_prefix``."""
    model, meta = load_model(root, model_prefix, cfg, inputs.catalog)
    recs = make_lists(inputs.at(at), model, cfg, at, trained_until(meta), users=users, with_reasons=False)
    return list_matrix(recs, users, inputs.catalog["item_id"], k)


def baseline_lists(model, users: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    out = [model.recommend(users[s:s + BATCH], seen, k)[0] for s in range(0, len(users), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def gate(candidate: np.ndarray, champ: np.ndarray | None, metric: str, tolerance: float) -> tuple[bool, str]:
    """Per warm user, the candidate's and the champion's ``metric`` (the same users, NaN
    where a user has no truth). Blocks only when the candidate's mean is below the
    champion's by more than ``tolerance`` (relative) and the paired bootstrap 95% interval
    of the difference lies below zero: a holdout of a few users (a small shop's week)
    moves by more than any tolerance on noise alone, and a gate that blocks on noise keeps
    stale lists live."""
    if champ is None:
        return True, "no champion to compare with"
    c, b = float(np.nanmean(candidate)), float(np.nanmean(champ))
    floor = b * (1 - tolerance)
    diff, lo, hi = paired_bootstrap(candidate, champ)
    verdict = (f"{metric}@K on warm users: candidate {c:.4f}, champion {b:.4f}, floor {floor:.4f} (tolerance "
               f"{tolerance:.0%}); paired difference {diff:+.4f} [95%: {lo:+.4f}, {hi:+.4f}] on "
               f"{int((~np.isnan(candidate - champ)).sum())} users")
    return bool(np.isnan(b) or c >= floor or not hi < 0), verdict


def evaluate(cfg: RunConfig) -> dict:
    """Writes ``reports/<date>/evaluation.json`` and ``evaluation.html``; raises
    :class:`PublishBlocked` (no publish) when the champion scores better beyond tolerance,
    unless ``force_publish``."""
    root = open_root(cfg.root)
    inputs = load_inputs(root, cfg)
    n_items, k = len(inputs.catalog), cfg.eval_k
    h = holdout(inputs.seqs, n_items, unix_seconds(cfg.date) - cfg.holdout_days * 86400)
    rng = np.random.default_rng(cfg.seed)
    warm, cold = (np.sort(rng.choice(a, cfg.eval_users, replace=False)) if len(a) > cfg.eval_users else a
                  for a in (h.warm, h.cold))
    seen = interactions(h.past, n_items, positive=False)
    liked = interactions(h.past, n_items)
    recent = interactions(h.past, n_items, since=h.start - RECENT_DAYS * 86400)
    counts = np.asarray(liked.sum(0)).ravel()
    popularity, recent_popularity = Popularity().fit(liked), Popularity().fit(recent)
    scored = np.concatenate([warm, cold])
    names = [inputs.user_ids[u] for u in scored]
    ours = nightrecs_lists(root, inputs, layout.model_dir(cfg.date), cfg, h.start, names, k)
    warm_lists = {
        "nightrecs": ours[:len(warm)],
        "popularity": baseline_lists(popularity, warm, seen, k),
        "recent_popularity": baseline_lists(recent_popularity, warm, seen, k),
        "co_occurrence": baseline_lists(CoOccurrence().fit(sample_rows(liked, CO_FIT_USERS, rng)), warm, seen, k),
    }
    candidate_version = model_meta(root, layout.model_dir(cfg.date))["version"]
    try:
        champ = champion(root)
        if champ:
            warm_lists["champion"] = nightrecs_lists(root, inputs, champ.model, cfg, h.start, names, k)[:len(warm)]
    except IncompatibleModel as e:  # an older format or another text model: nothing to compare
        log.warning("the champion is not evaluated: %s", e)
        champ = None
    cold_lists = {
        "nightrecs": ours[len(warm):],
        "popularity": baseline_lists(popularity, cold, seen, k),
        "recent_popularity": baseline_lists(recent_popularity, cold, seen, k),
    }
    metrics = {"warm": {m: summarize(lists, h.truth[warm], counts) for m, lists in warm_lists.items()},
               "cold": {m: summarize(lists, h.truth[cold], counts) for m, lists in cold_lists.items()}}
    paired = {m: per_user(warm_lists[m], h.truth[warm])[cfg.gate_metric] for m in ("nightrecs", "champion")
              if m in warm_lists}
    passed, verdict = gate(paired["nightrecs"], paired.get("champion"), cfg.gate_metric, cfg.gate_tolerance)
    result = {
        "date": cfg.date, "holdout_days": cfg.holdout_days, "k": k, "model_version": candidate_version,
        "champion": {"version": champ.version, "run_id": champ.run_id, "date": champ.run_date} if champ else None,
        "warm_users": int(len(warm)), "cold_users": int(len(cold)), "metrics": metrics,
        "gate": {"passed": passed, "forced": bool(not passed and cfg.force_publish), "verdict": verdict},
    }
    key = layout.reports(cfg.date, "evaluation.json")
    root.write_text(key, json.dumps(result, indent=2, default=float))
    staged = root.read_arrow(layout.staging(cfg.date), columns=["user_id", "item_id", "score", "source"])
    root.write_text(layout.reports(cfg.date, "evaluation.html"), evaluation_html(result, staged, n_items))
    record(root, cfg.date, "evaluation", {"status": "passed" if passed else "blocked", "verdict": verdict,
                                          "report": root.full(layout.reports(cfg.date, "evaluation.html"))})
    table = "\n".join(f"  {seg:4} {m:18} " + " ".join(f"{n}={v[n]:.4f}" for n in ("ndcg", "recall", "hr", "mrr"))
                      for seg, ms in metrics.items() for m, v in ms.items())
    log.info("evaluation at K=%d on the %d days before %s (%d warm, %d cold users):\n%s\n%s; report: %s", k,
             cfg.holdout_days, cfg.date, len(warm), len(cold), table, verdict,
             root.full(layout.reports(cfg.date, "evaluation.html")))
    if not passed and not cfg.force_publish:
        raise PublishBlocked(f"publish blocked: {verdict}. Yesterday's lists stay live; set force_publish "
                             f"to publish anyway. Report: {root.full(layout.reports(cfg.date, 'evaluation.html'))}")
    if not passed:
        log.warning("force_publish: publishing despite %s", verdict)
    return {"report": root.full(key), "gate": result["gate"], "warm_users": len(warm), "cold_users": len(cold),
            "ndcg_warm": metrics["warm"]["nightrecs"]["ndcg"]}


def sample_rows(m: sp.csr_matrix, n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """At most ``n`` random rows of ``m`` (the rest zeroed): bounds the co-occurrence fit."""
    if m.shape[0] <= n:
        return m
    keep = np.zeros(m.shape[0], bool)
    keep[rng.choice(m.shape[0], n, replace=False)] = True
    return sp.diags(keep.astype(float)) @ m
