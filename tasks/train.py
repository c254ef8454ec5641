"""Step 3: train the two-tower model (``models/seqrec.py``) on the users' histories.

The item tower reads cached text vectors of the frozen all-MiniLM-L6-v2 (``light``, the
default) or fine-tunes the encoder too (``full``, for a GPU). A night warm-starts from the
newest earlier model, its item rows matched to today's catalog by item id; ``full_retrain``
starts from scratch. The model trains on events before run date - ``valid_days``, stops
early on Recall@10 over those last days, records that moment as ``trained_until``, and
checkpoints every epoch so a retried task resumes where it crashed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from nightrecs.models.data import time_split
from nightrecs.models.text import default_base_model
from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import model_meta, previous_model, recommender, warm_start, write_model
from nightrecs.tasks.catalog import load_catalog, load_sequences, text_vectors, unix_seconds
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import LocalRoot, Root, local_output, open_root

log = logging.getLogger(__name__)


def checkpoint_dir(root: Root, date: str, tmp: Path) -> Path:
    """Durable for local roots (a retried task resumes); a temp dir for S3 roots."""
    return root.local_path(layout.checkpoint(date)) if isinstance(root, LocalRoot) else tmp / "checkpoint"


def train_model(cfg: RunConfig) -> dict:
    """Writes ``models/<date>/``. With ``skip_training`` the newest earlier model is carried
    over (remapped to today's catalog, its ``trained_until`` kept) instead of trained; with
    none to carry, one is trained."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    base = cfg.base_model or default_base_model()
    text, fingerprint = text_vectors(root, catalog["text"].tolist(), base)
    rec = recommender(cfg, catalog, text)
    prev = previous_model(root, cfg.date)
    if prev and not cfg.full_retrain:
        warm_start(rec, root, prev, catalog)
    split = unix_seconds(cfg.date) - cfg.valid_days * 86400
    stats: dict = {"epochs": 0}
    with tempfile.TemporaryDirectory(prefix="nightrecs-train-") as tmp:
        ckpt = checkpoint_dir(root, cfg.date, Path(tmp))
        until = model_meta(root, prev).get("trained_until") if cfg.skip_training and prev else None
        if until is not None:
            log.info("skip_training: reusing %s", root.full(prev))
        else:
            if cfg.skip_training:
                log.warning("skip_training: no earlier model of this format to reuse, training one")
            _, seqs = load_sequences(root, cfg.date, catalog["item_id"], cfg.dislike_rating)
            stats = rec.fit(*time_split(seqs, len(catalog), split), checkpoint_dir=ckpt)
            until = pd.Timestamp(split, unit="s", tz="UTC").isoformat()
        meta = {"date": cfg.date, "source": prev if prev and not cfg.full_retrain else "scratch",
                "mode": cfg.train_mode, "base_model": base, "text_model": fingerprint,
                "trained_until": str(until), "train": stats}
        with local_output(root, layout.model_dir(cfg.date)) as out:
            version = write_model(out, rec, catalog["item_id"].tolist(), meta)
        shutil.rmtree(ckpt, ignore_errors=True)  # trained and saved: a rerun starts afresh
    log.info("model %s (trained until %s) written to %s", version, until, root.full(layout.model_dir(cfg.date)))
    return {"model": root.full(layout.model_dir(cfg.date)), "version": version, "trained_until": str(until),
            **{k: v for k, v in stats.items() if k != "history"}}
