"""Step 3: train the two-tower model (``models/seqrec.py``) on the users' histories.

The item tower reads cached text vectors of the frozen all-MiniLM-L6-v2 (``light``, the
default) or fine-tunes the encoder too (``full``, for a GPU). A night warm-starts from the
newest earlier model, its item rows matched to today's catalog by item id; ``full_retrain``
starts from scratch. Training stops early on Recall@10 over the last ``VALID_DAYS`` before
the run date, and checkpoints every epoch so a retried task resumes where it crashed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from models.seqrec import ModelConfig, Recommender, TextEncoder, TrainConfig, time_split
from models.text import TextTower, default_base_model
from spark_jobs.features import VALID_DAYS
from tasks import layout
from tasks.catalog import load_catalog, load_sequences, text_vectors, unix_seconds
from tasks.layout import RunConfig
from tasks.storage import LocalRoot, Root, local_copy, local_output, open_root

log = logging.getLogger(__name__)

META_FILE = "nightrecs_model.json"
ITEMS_FILE = "item_ids.json"


def previous_model(root: Root, before: str) -> str | None:
    """The newest ``models/<date>`` key with a date before ``before``, if any (models of an
    older format, without item ids, cannot be matched to a catalog and are skipped)."""
    dates = sorted({k.split("/")[1] for k in root.list("models") if k.endswith(ITEMS_FILE)})
    older = [d for d in dates if d < before]
    return layout.model_dir(older[-1]) if older else None


def recommender(cfg: RunConfig, catalog: pd.DataFrame, text: np.ndarray,
                model_cfg: ModelConfig | None = None, train_cfg: TrainConfig | None = None) -> Recommender:
    """A model over today's catalog rows; ``full`` mode brings the trainable text encoder."""
    model_cfg = model_cfg or ModelConfig(n_items=len(catalog), text_dim=text.shape[1])
    train_cfg = train_cfg or TrainConfig(mode=cfg.train_mode, epochs=cfg.train_epochs, batch_size=cfg.batch_size,
                                         lr=cfg.learning_rate, seed=cfg.seed)
    encoder = None
    if train_cfg.mode == "full":
        encoder = TextEncoder(TextTower(cfg.base_model or default_base_model()), catalog["text"].tolist())
    return Recommender(model_cfg, train_cfg, text, encoder)


def warm_start(rec: Recommender, root: Root, prefix: str, catalog: pd.DataFrame) -> None:
    """Load a saved model's weights, item rows matched by item id."""
    with local_copy(root, prefix) as path:
        old = json.loads((path / ITEMS_FILE).read_text())
        rows = pd.Index(old).get_indexer(catalog["item_id"])
        rec.load_weights(path, rows)
    log.info("weights from %s: %d of %d items known", root.full(prefix), int((rows >= 0).sum()), len(rows))


def checkpoint_dir(root: Root, date: str, tmp: Path) -> Path:
    """Durable for local roots (a retried task resumes); a temp dir for S3 roots."""
    return root.local_path(layout.checkpoint(date)) if isinstance(root, LocalRoot) else tmp / "checkpoint"


def train_model(cfg: RunConfig) -> dict:
    """Writes ``models/<date>/``: weights (safetensors), config, item ids and metadata
    with a version. With ``skip_training`` the newest earlier model is carried over
    (remapped to today's catalog) instead of trained, when there is one."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    base = cfg.base_model or default_base_model()
    text, fingerprint = text_vectors(root, catalog["text"].tolist(), base)
    rec = recommender(cfg, catalog, text)
    prev = previous_model(root, cfg.date)
    if prev and not cfg.full_retrain:
        warm_start(rec, root, prev, catalog)
    stats: dict = {"epochs": 0}
    with tempfile.TemporaryDirectory(prefix="nightrecs-train-") as tmp:
        ckpt = checkpoint_dir(root, cfg.date, Path(tmp))
        if cfg.skip_training and prev:
            log.info("skip_training: reusing %s", root.full(prev))
        else:
            if cfg.skip_training:
                log.warning("skip_training: no earlier model to reuse, training one")
            _, seqs = load_sequences(root, cfg.date, catalog["item_id"])
            split = unix_seconds(cfg.date) - VALID_DAYS * 86400
            train, valid = time_split(seqs, len(catalog), split)
            stats = rec.fit(train, valid, checkpoint_dir=ckpt)
        with local_output(root, layout.model_dir(cfg.date)) as out:
            version = rec.save(out)
            (out / ITEMS_FILE).write_text(json.dumps(catalog["item_id"].tolist()))
            meta = {"version": version, "date": cfg.date, "source": prev if prev and not cfg.full_retrain else "scratch",
                    "mode": cfg.train_mode, "base_model": base, "text_model": fingerprint, "train": stats}
            (out / META_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(ckpt, ignore_errors=True)  # trained and saved: a rerun starts afresh
    log.info("model %s written to %s", version, root.full(layout.model_dir(cfg.date)))
    return {"model": root.full(layout.model_dir(cfg.date)), "version": version,
            **{k: v for k, v in stats.items() if k != "history"}}


def model_meta(root: Root, date: str) -> dict:
    return json.loads(root.read_text(f"{layout.model_dir(date)}/{META_FILE}"))


def load_model(root: Root, cfg: RunConfig, catalog: pd.DataFrame) -> Recommender:
    """The run's trained model over today's catalog (the embed step's input)."""
    meta = model_meta(root, cfg.date)
    text, fingerprint = text_vectors(root, catalog["text"].tolist(), cfg.base_model or default_base_model())
    if fingerprint != meta["text_model"]:
        raise ValueError(f"{root.full(layout.model_dir(cfg.date))} was trained on text vectors of base model "
                         f"{meta['base_model']} ({meta['text_model']}); this run's base model differs ({fingerprint})")
    saved = json.loads(root.read_text(f"{layout.model_dir(cfg.date)}/config.json"))
    rec = recommender(cfg, catalog, text, ModelConfig(**saved["model"]), TrainConfig(**saved["train"]))
    warm_start(rec, root, layout.model_dir(cfg.date), catalog)
    return rec
