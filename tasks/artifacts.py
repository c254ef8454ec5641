"""The run's artifacts, read and written in one place: models (weights, item rows,
metadata), the published pointer and manifests, and the champion behind ``LATEST``.

A model folder holds ``model.safetensors`` and ``config.json`` (``Recommender.save``),
``item_ids.json`` (the item id of each item row) and ``nightrecs_model.json`` (version,
training stats and ``trained_until``: the ranker must not learn from the model's scores
on windows before it). Every published run keeps a copy of the model that made it, so
the champion can always be scored, even after a same-day rerun replaced ``models/<date>``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nightrecs.models.seqrec import ModelConfig, Recommender, TextEncoder, TrainConfig
from nightrecs.models.text import TextTower, default_base_model
from nightrecs.tasks import layout
from nightrecs.tasks.catalog import text_vectors
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import Root, local_copy

log = logging.getLogger(__name__)

MODEL_FILES = ("model.safetensors", "config.json", layout.MODEL_ITEMS, layout.MODEL_META)


class IncompatibleModel(Exception):
    """A saved model this code cannot score: an older format, or another text model."""


class NoPublishedRun(LookupError):
    pass


def model_meta(root: Root, prefix: str) -> dict:
    return json.loads(root.read_text(f"{prefix}/{layout.MODEL_META}"))


def write_model(out: Path, rec: Recommender, item_ids: list[str], meta: dict) -> str:
    """Weights, config, item rows and metadata into a local folder; returns the version."""
    version = rec.save(out)
    (out / layout.MODEL_ITEMS).write_text(json.dumps(item_ids))
    (out / layout.MODEL_META).write_text(json.dumps({"version": version, **meta}, indent=2))
    return version


def previous_model(root: Root, before: str) -> str | None:
    """The newest ``models/<date>`` prefix with a date before ``before``, if any (models of
    an older format, without item ids, cannot be matched to a catalog and are skipped)."""
    dates = sorted({k.split("/")[1] for k in root.list(layout.MODELS) if k.endswith(layout.MODEL_ITEMS)})
    older = [d for d in dates if d < before]
    return layout.model_dir(older[-1]) if older else None


def recommender(cfg: RunConfig, catalog: pd.DataFrame, text: np.ndarray, model_cfg: ModelConfig | None = None,
                train_cfg: TrainConfig | None = None) -> Recommender:
    """A model over today's catalog rows; ``full`` mode brings the trainable text encoder."""
    model_cfg = model_cfg or ModelConfig(n_items=len(catalog), text_dim=text.shape[1])
    train_cfg = train_cfg or TrainConfig(mode=cfg.train_mode, epochs=cfg.train_epochs, batch_size=cfg.batch_size,
                                         lr=cfg.learning_rate, seed=cfg.seed, max_seconds=60 * cfg.train_max_minutes,
                                         max_examples=cfg.train_max_examples)
    encoder = None
    if train_cfg.mode == "full":
        encoder = TextEncoder(TextTower(cfg.base_model or default_base_model()), catalog["text"].tolist())
    return Recommender(model_cfg, train_cfg, text, encoder)


def warm_start(rec: Recommender, root: Root, prefix: str, catalog: pd.DataFrame) -> None:
    """Load a saved model's weights, item rows matched by item id."""
    with local_copy(root, prefix) as path:
        if not (path / layout.MODEL_ITEMS).exists():
            raise IncompatibleModel(f"{root.full(prefix)} has no {layout.MODEL_ITEMS} (an older model format)")
        rows = pd.Index(json.loads((path / layout.MODEL_ITEMS).read_text())).get_indexer(catalog["item_id"])
        rec.load_weights(path, rows)
    log.info("weights from %s: %d of %d items known", root.full(prefix), int((rows >= 0).sum()), len(rows))


def load_model(root: Root, prefix: str, cfg: RunConfig, catalog: pd.DataFrame) -> tuple[Recommender, dict]:
    """A saved model over today's catalog, and its metadata. Raises
    :class:`IncompatibleModel` for an older format or another text model."""
    try:
        meta = model_meta(root, prefix)
        saved = json.loads(root.read_text(f"{prefix}/config.json"))
    except FileNotFoundError as e:
        raise IncompatibleModel(f"{root.full(prefix)} is not a complete model folder: {e}") from e
    if "text_model" not in meta or "trained_until" not in meta:
        raise IncompatibleModel(f"{root.full(prefix)} is an older model format (no text model or trained_until)")
    text, fingerprint = text_vectors(root, catalog["text"].tolist(), cfg.base_model or default_base_model())
    if fingerprint != meta["text_model"]:
        raise IncompatibleModel(f"{root.full(prefix)} was trained on text vectors of base model "
                                f"{meta['base_model']} ({meta['text_model']}); this run's base model "
                                f"differs ({fingerprint})")
    rec = recommender(cfg, catalog, text, ModelConfig(**saved["model"]), TrainConfig(**saved["train"]))
    warm_start(rec, root, prefix, catalog)
    return rec, meta


def trained_until(meta: dict) -> int:
    """Unix seconds: the model saw no event from then on."""
    return int(pd.Timestamp(meta["trained_until"], tz="UTC").timestamp())


# ------------------------------------------------------------------ published runs

def read_pointer(root: Root) -> tuple[dict | None, str | None]:
    """(what ``LATEST`` says, its version for :meth:`Root.put_if`); (None, None) before the first run."""
    try:
        data, version = root.read_versioned(layout.RECS_LATEST)
    except FileNotFoundError:
        return None, None
    pointer = json.loads(data)
    if "run_date" not in pointer:  # written before pointers named their date
        pointer["run_date"] = json.loads(root.read_text(layout.recs_pointed(pointer["manifest"])))["run_date"]
    return pointer, version


def current_manifest(root: Root) -> dict:
    pointer = read_pointer(root)[0]
    if pointer is None:
        raise NoPublishedRun(f"nothing published yet under {root.full(layout.RECS)}")
    return json.loads(root.read_text(layout.recs_pointed(pointer["manifest"])))


def find_model(root: Root, version: str) -> str | None:
    """The ``models/<date>`` folder holding the model of that version, if it is still kept."""
    for key in sorted(root.list(layout.MODELS), reverse=True):
        if key.endswith(layout.MODEL_META) and json.loads(root.read_text(key)).get("version") == version:
            return key.rsplit("/", 1)[0]
    return None


@dataclass
class Champion:
    version: str
    run_id: str
    run_date: str
    model: str  # the prefix of its model folder


def champion(root: Root) -> Champion | None:
    """The run behind ``LATEST``, whatever its date (a same-day rerun included), with the
    model that made it: the copy kept in the run, else (runs published before runs kept
    one) the ``models/`` folder of that version. None when nothing is published; raises
    :class:`IncompatibleModel` when the champion's model is gone or of an older format."""
    try:
        manifest = current_manifest(root)
    except NoPublishedRun:
        return None
    kept = manifest.get("model")
    prefix = layout.recs_pointed(kept) if kept else find_model(root, manifest["model_version"])
    if prefix is None:
        raise IncompatibleModel(f"the champion's model {manifest['model_version']} is no longer kept")
    return Champion(manifest["model_version"], manifest["run_id"], manifest["run_date"], prefix)


def copy_model(root: Root, src: str, dest: str) -> None:
    """Copy a model folder inside the root (a published run keeps the model that made it)."""
    for name in MODEL_FILES:
        root.write_bytes(f"{dest}/{name}", root.read_bytes(f"{src}/{name}"))
