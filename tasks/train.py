"""Step 3: fine-tune the text two-tower model on (history -> next item) pairs."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from models.two_tower import META_FILE, TextTower, TrainConfig, default_base_model, train
from tasks import layout
from tasks.catalog import load_catalog, load_histories
from tasks.layout import RunConfig
from tasks.storage import Root, local_copy, local_output, open_root

log = logging.getLogger(__name__)


def previous_model(root: Root, before: str) -> str | None:
    """The newest ``models/<date>`` key with a date before ``before``, if any."""
    dates = sorted({k.split("/")[1] for k in root.list("models") if k.endswith(META_FILE)})
    older = [d for d in dates if d < before]
    return layout.model_dir(older[-1]) if older else None


def train_model(cfg: RunConfig) -> dict:
    """Writes ``models/<date>/`` (safetensors + tokenizer + metadata with a version).

    With ``skip_training`` the newest earlier model (else the base model) is carried
    over unchanged, so later steps always find this run's model in one place.
    """
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    with tempfile.TemporaryDirectory(prefix="nightrecs-model-") as tmp:
        source = cfg.base_model or default_base_model()
        prev = previous_model(root, cfg.date) if cfg.skip_training else None
        if prev:
            source = str(root.download_dir(prev, Path(tmp)))
        tower = TextTower(source)
        stats: dict = {"steps": 0}
        if not cfg.skip_training:
            index = {item: i for i, item in enumerate(catalog["item_id"])}
            histories = load_histories(root, cfg.date, index)
            tcfg = TrainConfig(steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.learning_rate,
                               history_len=cfg.history_len, seed=cfg.seed)
            stats = train(tower, catalog["text"].tolist(), catalog["title"].tolist(),
                          histories["items"].tolist(), tcfg)
        else:
            log.info("skip_training: reusing %s", root.full(prev) if prev else f"base model {source}")
        with local_output(root, layout.model_dir(cfg.date)) as out:
            meta = tower.save(out, {"date": cfg.date, "source": prev or "base", "train": stats})
    log.info("model %s written to %s", meta["version"], root.full(layout.model_dir(cfg.date)))
    return {"model": root.full(layout.model_dir(cfg.date)), "version": meta["version"], **stats}


def model_meta(root: Root, date: str) -> dict:
    return json.loads(root.read_text(f"{layout.model_dir(date)}/{META_FILE}"))


def load_model(root: Root, date: str) -> TextTower:
    with local_copy(root, layout.model_dir(date)) as path:
        return TextTower(path)
