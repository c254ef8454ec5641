"""nightrecs' two-tower retrieval model and its training loop, readable in one sitting.

Item tower: a projection of the item's text vector (all-MiniLM-L6-v2 over title, category,
brand, description, price band) plus a learned ID embedding for items with enough
interactions; an item nobody touched yet is its text alone.

User tower: causal self-attention over the user's most recent items (SASRec), each input
being the item's vector plus event-type, position and time-gap embeddings; the output at
the newest position, plus a gap-to-now embedding and optional user features, is the user
vector. A user with only search queries is a sequence of query texts, embedded like items.

Training: next-item prediction at every position of every sequence with a sampled softmax
over the batch's targets plus uniformly sampled items, corrected for how likely each
candidate was to be sampled (logQ), so frequent items are not over-penalised. Early stopping
on validation Recall@K; checkpoints in safetensors so a crashed run resumes.

``light`` mode freezes the text encoder and caches its item vectors once (CPU friendly);
``full`` mode fine-tunes the encoder too (for a GPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from nightrecs.models.baselines import top_n
from nightrecs.models.data import DISLIKE, TOKENS, Sequences
from nightrecs.models.evaluation import per_user
from nightrecs.models.progress import progress
from nightrecs.models.text import pick_device

log = logging.getLogger(__name__)

GAP_BUCKETS = 24  # log2-spaced time gaps: under a minute ... over a year


@dataclass
class ModelConfig:
    n_items: int
    text_dim: int = 384
    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    user_features: int = 0  # width of the optional user feature vector


@dataclass
class TrainConfig:
    mode: str = "light"  # light: frozen text encoder, cached vectors; full: fine-tune it too
    epochs: int = 40
    batch_size: int = 128
    grad_accum: int = 1
    lr: float = 1e-3
    encoder_lr: float = 3e-5  # full mode: the pretrained text encoder moves far slower
    weight_decay: float = 1e-4
    negatives: int = 512  # uniformly sampled items per step, on top of the batch's targets
    min_id_count: int = 2  # fewer training interactions: the item is text only
    patience: int = 3  # epochs without a better validation recall before stopping
    eval_k: int = 10
    seed: int = 13
    max_seconds: float = 0.0  # a budget: stop after this much training time (0: none)
    max_examples: int = 0  # a budget: stop after this many training targets, all epochs (0: none)
    max_valid_users: int = 20_000  # early stopping scores a fixed sample of at most this many users


# dense scores held at once by ``Recommender.recommend`` (top_n works in float64 and keeps a
# few same-shaped masks: ~200 MB a chunk; unchunked, 100k users x 10k items took 14 GiB)
SCORES_AT_ONCE = 2 ** 24


def gap_bucket(seconds: torch.Tensor) -> torch.Tensor:
    """0 = padding; 1.. = log2 buckets of a time gap in minutes."""
    minutes = seconds.clamp(min=0).float() / 60.0
    return (torch.log2(minutes + 1).floor().long() + 1).clamp(max=GAP_BUCKETS)


class ItemTower(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_items = cfg.n_items
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim)
        self.ids = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)  # row 0: padding
        nn.init.normal_(self.ids.weight, std=0.02)
        self.register_buffer("has_id", torch.zeros(cfg.n_items + 1, dtype=torch.bool))

    def forward(self, items: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``items``: 1-based item indices (0 = padding; above ``n_items``: a search query,
        text only); ``text``: their text vectors."""
        known = torch.where(items <= self.n_items, items, 0)
        return self.text_proj(text) + self.ids(known) * self.has_id[known].unsqueeze(-1)


class UserTower(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.event_type = nn.Embedding(len(TOKENS) + 1, cfg.dim, padding_idx=0)
        self.gap = nn.Embedding(GAP_BUCKETS + 1, cfg.dim, padding_idx=0)
        self.now_gap = nn.Embedding(GAP_BUCKETS + 1, cfg.dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.features = nn.Linear(cfg.user_features, cfg.dim) if cfg.user_features else None
        self.heads = cfg.heads

    def forward(self, item_vecs: torch.Tensor, types: torch.Tensor, gaps: torch.Tensor,
                now_gaps: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state at every position ``(B, L, dim)``; sequences are left-padded (type
        0), so position -1 is the newest. ``now_gaps``: gap bucket from each position's
        event to the moment of the prediction it makes."""
        length = item_vecs.shape[1]
        x = item_vecs + self.pos.weight[-length:] + self.event_type(types) + self.gap(gaps)
        # attend to earlier real events and to yourself (a padding row then sees only
        # itself instead of nothing, which would be NaN)
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        allowed = (torch.tril(~eye) & (types != 0).unsqueeze(1)) | eye
        mask = (~allowed).repeat_interleave(self.heads, 0)
        h = self.encoder(self.drop(x), mask=mask)
        h = self.norm(h) + self.now_gap(now_gaps)
        if self.features is not None and features is not None:
            h = h + self.features(features).unsqueeze(1)
        return h


class TextEncoder(nn.Module):
    """Full mode: texts (by row index) through the text tower being fine-tuned. Every text
    is tokenized once, here: tokenizing a step's thousands of texts took longer than the
    encoder's forward and backward pass on them (measured on an H100)."""

    def __init__(self, tower: nn.Module, texts: Sequence[str], max_tokens: int = 64):
        super().__init__()
        self.tower = tower
        ids = tower.tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
        self.lengths = torch.tensor([len(i) for i in ids])
        # a plain attribute, not a buffer: the token table stays on the CPU and out of checkpoints
        self.ids = torch.full((len(ids), max((len(i) for i in ids), default=1)), tower.tokenizer.pad_token_id or 0)
        for r, i in enumerate(ids):
            self.ids[r, :len(i)] = torch.tensor(i)

    def forward(self, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        lengths = self.lengths[rows]
        width = int(lengths.max())
        mask = (torch.arange(width) < lengths.unsqueeze(1)).long()
        return self.tower.pool(self.ids[rows, :width], mask)


class TwoTower(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.items = ItemTower(cfg)
        self.users = UserTower(cfg)


def _pad_left(rows: Sequence[np.ndarray], length: int, dtype=np.int64) -> np.ndarray:
    out = np.zeros((len(rows), length), dtype=dtype)
    for r, a in enumerate(rows):
        a = a[-length:]
        if len(a):
            out[r, length - len(a):] = a
    return out


def training_windows(seqs: Sequences, max_len: int) -> list[tuple[int, int]]:
    """(user, end) slices covering every event once as a target: each user's history cut
    into windows of ``max_len + 1`` events from the newest back (the extra event is the
    first window position's target)."""
    out = []
    for u, items in enumerate(seqs.items):
        end = len(items)
        while end >= 2:
            out.append((u, end))
            end -= max_len
    return out


@dataclass
class Batch:
    items: torch.Tensor  # (B, L) 1-based inputs, 0 = padding
    types: torch.Tensor
    gaps: torch.Tensor  # gap bucket since the previous event (0 for the first)
    now_gaps: torch.Tensor  # gap bucket from the event to the moment of its prediction
    targets: torch.Tensor  # (B, L) 1-based next items, 0 = no target
    features: torch.Tensor | None


def _batch(seqs: Sequences, users: Sequence[int], items: list, types: list, times: list,
           when: np.ndarray, targets: list | None, max_len: int) -> Batch:
    """Left-pad per-user rows into a batch; ``when``: ``(B, L)`` prediction times."""
    items_, times_ = torch.from_numpy(_pad_left(items, max_len)), _pad_left(times, max_len)
    real = items_ > 0
    prev_real = np.concatenate([np.zeros_like(times_[:, :1], dtype=bool), real.numpy()[:, :-1]], 1)
    prev = np.where(prev_real, np.concatenate([times_[:, :1], times_[:, :-1]], 1), times_)
    feats = None if seqs.features is None else torch.as_tensor(seqs.features[list(users)], dtype=torch.float32)
    return Batch(items=items_, types=torch.from_numpy(_pad_left(types, max_len)),
                 gaps=torch.where(real, gap_bucket(torch.from_numpy(times_ - prev)), 0),
                 now_gaps=torch.where(real, gap_bucket(torch.from_numpy(when - times_)), 0),
                 targets=torch.from_numpy(_pad_left(targets, max_len)) if targets else torch.zeros_like(items_),
                 features=feats)


def make_batch(seqs: Sequences, windows: Sequence[tuple[int, int]], max_len: int) -> Batch:
    """Training batch: at every position, the next event is the target, unless it is a dislike."""
    cols: dict[str, list] = {k: [] for k in ("items", "types", "times", "targets", "target_times")}
    for u, end in windows:
        start = max(0, end - max_len - 1)
        items, times = seqs.items[u][start:end], seqs.ts[u][start:end]
        cols["items"].append(items[:-1] + 1)
        cols["types"].append(seqs.types[u][start:end - 1])
        cols["times"].append(times[:-1])
        cols["targets"].append(np.where(seqs.types[u][start + 1:end] == DISLIKE, 0, items[1:] + 1))
        cols["target_times"].append(times[1:])
    return _batch(seqs, [u for u, _ in windows], cols["items"], cols["types"], cols["times"],
                  _pad_left(cols["target_times"], max_len), cols["targets"], max_len)


def query_batch(seqs: Sequences, users: Sequence[int], now: int, max_len: int) -> Batch:
    """Inputs for predicting each user's next items at unix time ``now``."""
    return _batch(seqs, users, [seqs.items[u][-max_len:] + 1 for u in users],
                  [seqs.types[u][-max_len:] for u in users], [seqs.ts[u][-max_len:] for u in users],
                  np.full((len(users), max_len), now, dtype=np.int64), None, max_len)


class Recommender:
    """``fit`` / ``recommend`` (and the vectors behind it, for FAISS) over a
    :class:`TwoTower`, in light (cached text vectors) or full (fine-tuned encoder) mode."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, text: np.ndarray,
                 encoder: nn.Module | None = None):
        """``text``: ``(n_items [+ n_queries], text_dim)`` cached text vectors, items first;
        ``encoder`` (full mode): a module mapping those row indices to text vectors with
        gradients, trained with the rest (:class:`TextEncoder`)."""
        self.cfg, self.tcfg = model_cfg, train_cfg
        torch.manual_seed(train_cfg.seed)
        self.model = TwoTower(model_cfg)
        self.text = torch.cat([torch.zeros(1, text.shape[1]), torch.as_tensor(text, dtype=torch.float32)])
        if encoder is not None:
            self.model.text_encoder = encoder
        self.state: dict = {"epoch": 0, "best_recall": -1.0, "bad_epochs": 0}

    # ------------------------------------------------------------------ item vectors
    def _text(self, items: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.model, "text_encoder"):
            return self.text.to(items.device)[items]
        flat, inverse = torch.unique(items, return_inverse=True)
        vecs = torch.zeros(len(flat), self.text.shape[1], device=items.device)
        real = flat > 0
        vecs[real] = self.model.text_encoder(flat[real] - 1).to(vecs.dtype)
        return vecs[inverse]

    def item_vectors(self, batch_size: int = 4096) -> np.ndarray:
        """``(n_items, dim)`` vectors of every item, for FAISS."""
        device = next(self.model.parameters()).device
        self.model.eval()
        out = []
        with torch.inference_mode():
            for s in range(1, self.cfg.n_items + 1, batch_size):
                idx = torch.arange(s, min(s + batch_size, self.cfg.n_items + 1), device=device)
                out.append(self.model.items(idx, self._text(idx)).float().cpu())
        return torch.cat(out).numpy()

    def user_vectors(self, seqs: Sequences, users: Sequence[int], now: int, batch_size: int = 1024) -> np.ndarray:
        """``(len(users), dim)``: each user's state after their history, at unix time ``now``."""
        device = next(self.model.parameters()).device
        self.model.eval()
        users = list(users)
        out = np.empty((len(users), self.cfg.dim), np.float32)
        with torch.inference_mode():
            for s in range(0, len(users), batch_size):
                b = query_batch(seqs, users[s:s + batch_size], now, self.cfg.max_len)
                # copied out: on the CPU a slice of the hidden states is a view that would keep
                # each batch's (users, max_len, dim) block alive (12.8 GB at a million users)
                out[s:s + batch_size] = self._hidden(b, device)[:, -1].float().cpu().numpy()
        return out

    def recommend(self, seqs: Sequences, users: Sequence[int], now: int, n: int,
                  seen: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per user by exact inner product, ``seen`` rows excluded; the
        baselines' ``(ids, scores)`` shape."""
        users_v, items_v = self.user_vectors(seqs, users, now), self.item_vectors()
        seen = None if seen is None else sp.csr_matrix(seen)
        step = max(1, SCORES_AT_ONCE // max(len(items_v), 1))  # bounded memory at any catalog size
        parts = [top_n(users_v[s:s + step] @ items_v.T, n, None if seen is None else seen[s:s + step])
                 for s in range(0, len(users_v), step)] or [top_n(np.zeros((0, len(items_v)), np.float32), n)]
        return np.concatenate([i for i, _ in parts]), np.concatenate([sc for _, sc in parts])

    def _hidden(self, b: Batch, device: torch.device) -> torch.Tensor:
        items = b.items.to(device)
        vecs = self.model.items(items, self._text(items))
        feats = None if b.features is None else b.features.to(device)
        return self.model.users(vecs, b.types.to(device), b.gaps.to(device), b.now_gaps.to(device), feats)

    # ------------------------------------------------------------------ training
    def _loss(self, b: Batch, device: torch.device, log_q: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Sampled softmax: candidates are the batch's distinct targets plus uniform samples;
        each logit is corrected by the log of the candidate's expected count in the set."""
        h = self._hidden(b, device)
        targets = b.targets.to(device)
        at = targets > 0
        cand = torch.unique(torch.cat([targets[at], torch.randint(
            1, self.cfg.n_items + 1, (self.tcfg.negatives,), generator=gen).to(device)]))
        cvecs = self.model.items(cand, self._text(cand))
        logits = h[at] @ cvecs.T - log_q[cand]
        label = torch.searchsorted(cand, targets[at])
        return F.cross_entropy(logits.float(), label)

    def fit(self, train: Sequences, valid: tuple[Sequences, sp.csr_matrix, int] | None = None,
            checkpoint_dir: Path | None = None) -> dict:
        """Train on ``train`` (resuming from ``checkpoint_dir`` when it holds a checkpoint);
        ``valid`` = (histories, truth rows per user, prediction time) for early stopping on
        Recall@K, keeping the best epoch's weights. Without validation users it trains all
        ``epochs`` and keeps the last."""
        tc = self.tcfg
        if valid is not None and not np.diff(valid[1].indptr).any():
            log.warning("no validation users: training %d epochs without early stopping", tc.epochs)
            valid = None
        device, amp = pick_device()
        model = self.model.to(device)
        counts = np.bincount(np.concatenate(train.items) if train.items else np.zeros(0, int),
                             minlength=self.cfg.n_items)
        model.items.has_id[1:] = torch.as_tensor(counts >= tc.min_id_count, device=device)
        # expected count of each item among a step's candidates: batch targets + uniform
        n_targets = tc.batch_size * self.cfg.max_len
        q = n_targets * counts / max(counts.sum(), 1) + tc.negatives / self.cfg.n_items
        log_q = torch.cat([torch.zeros(1), torch.log(torch.as_tensor(q, dtype=torch.float32))]).to(device)
        self.text = self.text.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        encoder = {id(p) for p in model.text_encoder.parameters()} if hasattr(model, "text_encoder") else set()
        opt = torch.optim.AdamW([{"params": [p for p in params if id(p) not in encoder]},
                                 {"params": [p for p in params if id(p) in encoder], "lr": tc.encoder_lr}],
                                lr=tc.lr, weight_decay=tc.weight_decay)
        self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if checkpoint_dir is not None and (checkpoint_dir / "checkpoint.safetensors").exists():
            self._load_checkpoint(checkpoint_dir, opt)
            log.info("resumed from %s at epoch %d", checkpoint_dir, self.state["epoch"])
        windows = training_windows(train, self.cfg.max_len)
        history = []
        start, seen, budget_hit = time.perf_counter(), 0, None
        while self.state["epoch"] < tc.epochs and windows and budget_hit is None:
            model.train()
            # every epoch seeds its own shuffling, sampling and dropout: a resumed run
            # repeats exactly what the crashed one would have done
            epoch_seed = tc.seed + self.state["epoch"]
            torch.manual_seed(epoch_seed)
            gen = torch.Generator().manual_seed(epoch_seed)
            order = np.random.default_rng(epoch_seed).permutation(len(windows))
            steps = math.ceil(len(order) / tc.batch_size)
            bar = progress(range(steps), desc=f"epoch {self.state['epoch'] + 1} ({device.type})", unit="step", leave=False)
            total = 0.0
            for step in bar:
                b = make_batch(train, [windows[i] for i in order[step * tc.batch_size:(step + 1) * tc.batch_size]],
                               self.cfg.max_len)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = self._loss(b, device, log_q, gen) / tc.grad_accum
                loss.backward()
                if (step + 1) % tc.grad_accum == 0 or step + 1 == steps:
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                total += loss.item() * tc.grad_accum
                seen += int((b.targets > 0).sum())
                bar.set_postfix(loss=f"{total / (step + 1):.3f}", events_s=f"{seen / (time.perf_counter() - start):.0f}")
                budget_hit = self._budget_hit(time.perf_counter() - start, seen)
                if budget_hit:
                    steps = step + 1  # the epoch ends here; it is validated like a whole one
                    bar.close()
                    log.warning("training budget hit: %s, in epoch %d after %d of its steps; keeping the best "
                                "weights so far", budget_hit, self.state["epoch"] + 1, steps)
                    break
            self.state["epoch"] += 1
            recall = self.recall(*valid) if valid is not None else float("nan")
            history.append({"epoch": self.state["epoch"], "loss": total / steps, "valid_recall": recall})
            log.info("epoch %d: loss %.4f, valid recall@%d %.4f", self.state["epoch"], total / steps, tc.eval_k, recall)
            if valid is None or recall > self.state["best_recall"]:
                self.state.update(best_recall=recall, bad_epochs=0)
                self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                self.state["bad_epochs"] += 1
            if checkpoint_dir is not None:
                self._save_checkpoint(checkpoint_dir, opt)
            if valid is not None and self.state["bad_epochs"] >= tc.patience:
                log.info("early stop: no better valid recall for %d epochs", tc.patience)
                break
        model.load_state_dict(self.best)
        return {"epochs": self.state["epoch"], "best_valid_recall": self.state["best_recall"],
                "seconds": round(time.perf_counter() - start, 2), "examples": seen, "budget_hit": budget_hit,
                "device": device.type, "bf16": amp is not None, "history": history}

    def _budget_hit(self, seconds: float, examples: int) -> str | None:
        """Which training budget is spent, if any (a night has a deadline; a big shop's epoch
        can take longer than the night)."""
        tc = self.tcfg
        if tc.max_seconds and seconds >= tc.max_seconds:
            return f"{seconds:.0f} s of training >= max_seconds {tc.max_seconds:.0f}"
        if tc.max_examples and examples >= tc.max_examples:
            return f"{examples:,} training targets >= max_examples {tc.max_examples:,}"
        return None

    def recall(self, seqs: Sequences, truth: sp.csr_matrix, now: int) -> float:
        """Mean Recall@K over users with truth rows, seen items excluded."""
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if not len(users):
            return float("nan")
        if len(users) > self.tcfg.max_valid_users:  # the same sample every epoch
            users = np.sort(np.random.default_rng(self.tcfg.seed).choice(users, self.tcfg.max_valid_users,
                                                                        replace=False))
        seen = sp.csr_matrix((np.ones(sum(len(seqs.items[u]) for u in users)),
                              (np.repeat(np.arange(len(users)), [len(seqs.items[u]) for u in users]),
                               np.concatenate([seqs.items[u] for u in users]))),
                             shape=(len(users), self.cfg.n_items))
        ids, _ = self.recommend(seqs, users.tolist(), now, self.tcfg.eval_k, seen)
        return float(np.nanmean(per_user(ids, truth[users])["recall"]))

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, out: Path, opt: torch.optim.Optimizer) -> None:
        """Weights and optimizer moments in safetensors, counters in JSON; written to temp
        names first so a crash mid-write leaves the previous checkpoint intact."""
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in self.best.items()})
        for i, s in opt.state_dict()["state"].items():
            for name, v in s.items():
                tensors[f"opt.{i}.{name}"] = torch.as_tensor(v).detach().cpu().contiguous()
        save_file(tensors, out / "checkpoint.safetensors.tmp")
        (out / "checkpoint.json.tmp").write_text(json.dumps({"state": self.state, "model": asdict(self.cfg),
                                                             "train": asdict(self.tcfg)}))
        (out / "checkpoint.safetensors.tmp").replace(out / "checkpoint.safetensors")
        (out / "checkpoint.json.tmp").replace(out / "checkpoint.json")

    def _load_checkpoint(self, src: Path, opt: torch.optim.Optimizer) -> None:
        tensors = load_file(src / "checkpoint.safetensors")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.best = {k[5:]: v.to(self.best[k[5:]].device) for k, v in tensors.items() if k.startswith("best.")}
        sd = opt.state_dict()
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                sd["state"].setdefault(int(i), {})[name] = v
        opt.load_state_dict(sd)
        self.state = json.loads((src / "checkpoint.json").read_text())["state"]

    def save(self, path: Path) -> str:
        """Weights only (safetensors) + config: what the nightly embed step loads. Returns
        the version, a digest of the weights: the same weights always get the same one."""
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                  path / "model.safetensors")
        (path / "config.json").write_text(json.dumps({"model": asdict(self.cfg), "train": asdict(self.tcfg)}))
        return "m-" + hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:12]

    def load_weights(self, path: Path, item_rows: np.ndarray | None = None) -> None:
        """Warm start from a saved model. ``item_rows[i]``: the saved model's index of this
        model's item ``i``, -1 for an item it did not know (its ID row stays fresh); None:
        the same indices. Everything else whose shape matches is copied."""
        state = load_file(path / "model.safetensors")
        own = self.model.state_dict()
        rows = np.arange(self.cfg.n_items) if item_rows is None else np.asarray(item_rows)
        for k, v in state.items():
            if k in ("items.ids.weight", "items.has_id"):  # row 0 is padding
                known = (rows >= 0) & (rows < len(v) - 1)
                own[k][1:][torch.from_numpy(known)] = v[1:][torch.from_numpy(rows[known])].to(own[k].dtype)
            elif k in own and own[k].shape == v.shape:
                own[k] = v
        self.model.load_state_dict(own)
