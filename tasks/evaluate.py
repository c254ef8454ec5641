"""Step 8: score the run's model on a time-based holdout, next to built-in baselines and the
champion (the model behind ``recs/LATEST``); a drop beyond the tolerance blocks publishing.

The holdout is the last ``holdout_days`` before the run date. Every method sees the users'
histories cut at its start and predicts the items each user first touches inside it. The
run's model trained on events before run date - ``VALID_DAYS`` (and stopped early on those
days), so with ``holdout_days <= VALID_DAYS`` it never trained on the holdout; an older
champion trained on older data still. Warm users (a history before the holdout) get the
model's lists; cold users (first seen inside it) get the popularity fallbacks retrieve
gives them: their segment's, then everyone's. Histories keep an item's last touch only, so
an item touched before and again inside the holdout counts as new, alike for every method.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from expectations.errors import DataQualityError
from models.baselines import CoOccurrence, Popularity, top_n
from models.evaluation import Holdout, holdout, interactions, summarize
from models.hybrid import Hybrid, ItemAttributes
from models.seqrec import Recommender, Sequences
from tasks import layout
from tasks.catalog import item_attributes, load_catalog, load_sequences, unix_seconds
from tasks.layout import RunConfig
from tasks.reports import record, reports_key
from tasks.report_html import evaluation_html
from tasks.storage import Root, open_root
from tasks.train import META_FILE, load_model, model_meta

log = logging.getLogger(__name__)

RECENT_DAYS = 7  # "recent popularity": the week before the holdout
BATCH = 512  # users scored at once (a dense users x items block)
CO_FIT_USERS = 50_000  # co-occurrence is fitted on at most this many users' histories


class PublishBlocked(DataQualityError):
    """The run's lists score worse than the champion's beyond the tolerance."""


def model_lists(rec: Recommender, h: Holdout, users: np.ndarray, seen: sp.csr_matrix, k: int,
                attributes: ItemAttributes, seed: int) -> np.ndarray:
    """The lists retrieve would have made at the holdout's start: the hybrid ranker learned
    on the weeks before it."""
    hybrid = Hybrid(rec, seen.shape[1], attributes=attributes, seed=seed).fit(h.past, h.start)
    return hybrid.recommend(h.past, users, seen, h.start, k)[0]


def baseline_lists(model, users: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    out = [model.recommend(users[s:s + BATCH], seen, k)[0] for s in range(0, len(users), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def decayed(past: Sequences, n_items: int, at: int, half_life_days: float = 7.0) -> sp.csr_matrix:
    """Users x items, each touch weighted 0.5 ** (its age in days / half-life): the shape
    of the feature job's decayed popularity, from the histories."""
    user = np.repeat(np.arange(len(past.items)), [len(a) for a in past.items])
    ts = np.concatenate(past.ts) if past.ts else np.zeros(0)
    w = 0.5 ** ((at - ts) / 86400 / half_life_days)
    item = np.concatenate(past.items) if past.items else np.zeros(0, int)
    return sp.csr_matrix((w, (user, item)), shape=(len(past.items), n_items))


def segment_lists(users: np.ndarray, user_values: list[np.ndarray], recent: sp.csr_matrix,
                  global_scores: np.ndarray, k: int) -> np.ndarray:
    """Cold users' lists as retrieve builds them: the first segment column whose value has
    activity ranks its users' items by decayed popularity, everyone's fills up."""
    n_items = recent.shape[1]
    base = global_scores / max(global_scores.max(), 1e-12)  # in [0, 1]
    scores = np.tile(base, (len(users), 1))
    done = np.zeros(len(users), bool)
    for values in user_values:  # most specific column first
        for value in pd.unique(values[users][~done]):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            members = np.flatnonzero(values == value)
            counts = np.asarray(recent[members].sum(0)).ravel()
            if counts.max() <= 0:
                continue
            mine = (values[users] == value) & ~done
            scores[mine] = 1.0 + counts / counts.max() + base / n_items  # segment first, ties by global
            done |= mine
    return top_n(scores, k)[0]


def find_model(root: Root, version: str) -> str | None:
    """The ``models/<date>`` folder holding the model of that version, if it is still kept."""
    for key in sorted(root.list("models"), reverse=True):
        if key.endswith(META_FILE) and json.loads(root.read_text(key)).get("version") == version:
            return key.rsplit("/", 1)[0]
    return None


def champion(root: Root) -> tuple[str, str] | None:
    """(version, run date) of the model behind ``recs/LATEST``, if a run was published."""
    if not root.exists(layout.RECS_LATEST):
        return None
    pointer = json.loads(root.read_text(layout.RECS_LATEST))
    manifest = json.loads(root.read_text(f"{layout.RECS}/{pointer['manifest']}"))
    model_dir = find_model(root, manifest["model_version"])
    return (manifest["model_version"], model_dir.split("/")[1]) if model_dir else None


def gate(candidate: dict, champ: dict | None, metric: str, tolerance: float) -> tuple[bool, str]:
    """Passes unless the candidate's warm-user ``metric`` is below the champion's by more
    than ``tolerance`` (relative)."""
    if champ is None:
        return True, "no champion to compare with"
    c, b = candidate[metric], champ[metric]
    floor = b * (1 - tolerance)
    verdict = f"{metric}@K on warm users: candidate {c:.4f}, champion {b:.4f}, floor {floor:.4f} (tolerance {tolerance:.0%})"
    return bool(np.isnan(b) or c >= floor), verdict


def evaluate(cfg: RunConfig) -> dict:
    """Writes ``reports/<date>/evaluation.json`` and ``evaluation.html``; raises
    :class:`PublishBlocked` (no publish) when the champion scores better beyond tolerance,
    unless ``force_publish``."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    n_items, k, attributes = len(catalog), cfg.eval_k, item_attributes(catalog)
    user_ids, seqs = load_sequences(root, cfg.date, catalog["item_id"])
    h = holdout(seqs, n_items, unix_seconds(cfg.date) - cfg.holdout_days * 86400)
    rng = np.random.default_rng(cfg.seed)
    warm, cold = (np.sort(rng.choice(a, cfg.eval_users, replace=False)) if len(a) > cfg.eval_users else a
                  for a in (h.warm, h.cold))
    seen = interactions(h.past, n_items)
    recent = interactions(h.past, n_items, since=h.start - RECENT_DAYS * 86400)
    counts = np.asarray(seen.sum(0)).ravel()
    fit_users = sample_rows(seen, CO_FIT_USERS, rng)
    popularity, recent_popularity = Popularity().fit(seen), Popularity().fit(recent)

    warm_lists = {
        "nightrecs": model_lists(load_model(root, cfg, catalog), h, warm, seen, k, attributes, cfg.seed),
        "popularity": baseline_lists(popularity, warm, seen, k),
        "recent_popularity": baseline_lists(recent_popularity, warm, seen, k),
        "co_occurrence": baseline_lists(CoOccurrence().fit(fit_users), warm, seen, k),
    }
    champ = champion(root)
    candidate_version = model_meta(root, cfg.date)["version"]
    if champ and champ[1] != cfg.date:
        try:
            champ_model = load_model(root, RunConfig(**{**cfg.to_dict(), "date": champ[1]}), catalog)
            warm_lists["champion"] = model_lists(champ_model, h, warm, seen, k, attributes, cfg.seed)
        except (ValueError, KeyError, FileNotFoundError) as e:  # another text model or an older format
            log.warning("champion %s not evaluated: %s", champ[0], e)
            champ = None
    elif champ:
        log.warning("the champion's model folder is this run's date (%s): it was replaced, no comparison", cfg.date)
        champ = None
    users_table = root.read_parquet(layout.validated(cfg.date, "users"), columns=["user_id", *cfg.segment_columns])
    by_user = users_table.set_index("user_id").reindex(user_ids)
    decay = decayed(h.past, n_items, h.start)
    cold_lists = {
        "nightrecs": segment_lists(cold, [by_user[c].to_numpy(dtype=object) for c in cfg.segment_columns],
                                   decay, np.asarray(decay.sum(0)).ravel(), k),
        "popularity": baseline_lists(popularity, cold, seen, k),
        "recent_popularity": baseline_lists(recent_popularity, cold, seen, k),
    }
    metrics = {"warm": {m: summarize(lists, h.truth[warm], counts) for m, lists in warm_lists.items()},
               "cold": {m: summarize(lists, h.truth[cold], counts) for m, lists in cold_lists.items()}}
    passed, verdict = gate(metrics["warm"]["nightrecs"], metrics["warm"].get("champion"),
                           cfg.gate_metric, cfg.gate_tolerance)
    result = {
        "date": cfg.date, "holdout_days": cfg.holdout_days, "k": k, "model_version": candidate_version,
        "champion": {"version": champ[0], "date": champ[1]} if champ else None,
        "warm_users": int(len(warm)), "cold_users": int(len(cold)), "metrics": metrics,
        "gate": {"passed": passed, "forced": bool(not passed and cfg.force_publish), "verdict": verdict},
    }
    key = reports_key(cfg.date, "evaluation.json")
    root.write_text(key, json.dumps(result, indent=2, default=float))
    staged = root.read_parquet(layout.staging(cfg.date), columns=["user_id", "item_id", "score", "source"])
    root.write_text(reports_key(cfg.date, "evaluation.html"), evaluation_html(result, staged, n_items))
    record(root, cfg.date, "evaluation", {"status": "passed" if passed else "blocked", "verdict": verdict,
                                          "report": root.full(reports_key(cfg.date, "evaluation.html"))})
    table = "\n".join(f"  {seg:4} {m:18} " + " ".join(f"{n}={v[n]:.4f}" for n in ("ndcg", "recall", "hr", "mrr"))
                      for seg, ms in metrics.items() for m, v in ms.items())
    log.info("evaluation at K=%d on the %d days before %s (%d warm, %d cold users):\n%s\n%s; report: %s", k,
             cfg.holdout_days, cfg.date, len(warm), len(cold), table, verdict,
             root.full(reports_key(cfg.date, "evaluation.html")))
    if not passed and not cfg.force_publish:
        raise PublishBlocked(f"publish blocked: {verdict}. Yesterday's lists stay live; set force_publish "
                             f"to publish anyway. Report: {root.full(reports_key(cfg.date, 'evaluation.html'))}")
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
