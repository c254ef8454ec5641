"""Benchmark: training plus embedding on MovieLens latest-small, end to end.

    python benchmarks/training.py [--mode light|full] [--epochs 40] [--valid-days 90]

Issue 4's target for ``light`` (frozen text encoder): under 5 minutes on 2 CPU cores.
``full`` fine-tunes the text encoder too and is meant for a GPU. Times each stage from
nothing cached: loading the ratings, the all-MiniLM-L6-v2 vectors of every movie's text
(light: computed here, not read from a cache; full: the encoder runs inside every step),
training the two-tower model with early stopping on the last ``--valid-days``, then the
vectors of every item and user. Prints a Markdown table; a benchmark, not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from benchmarks.quality_study import movielens
from nightrecs.models.seqrec import EVENT_TYPES, ModelConfig, Recommender, Sequences, TextEncoder, TrainConfig, time_split
from nightrecs.models.text import TextTower, default_base_model, encode, pick_device

log = logging.getLogger("training")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("light", "full"), default="light")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--valid-days", type=int, default=90)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stages: list[tuple[str, float, str]] = []
    start = t = time.perf_counter()

    def done(stage: str, note: str = "") -> None:
        nonlocal t
        stages.append((stage, time.perf_counter() - t, note))
        t = time.perf_counter()

    data = movielens()
    done("load MovieLens", f"{len(data.user):,} ratings, {data.n_users} users, {data.n_items:,} movies")
    tower = TextTower(default_base_model())
    encoder = None
    if a.mode == "light":
        text = encode(tower, data.item_text, max_tokens=64, desc="embed item texts")
        done("MiniLM vectors of every movie text", f"{text.shape[0]:,} x {text.shape[1]}")
    else:  # the encoder is trained; no cached vectors
        text = np.zeros((data.n_items, tower.encoder.config.hidden_size), np.float32)
        encoder = TextEncoder(tower, data.item_text)
    ts = data.ts.astype("int64")
    seqs = Sequences.from_events(data.user, data.item, np.full(len(ts), EVENT_TYPES.index("rating") + 1),
                                 ts, data.n_users)
    split = int(ts.max()) - a.valid_days * 86400
    train, valid = time_split(seqs, data.n_items, split)
    rec = Recommender(ModelConfig(n_items=data.n_items), TrainConfig(mode=a.mode, epochs=a.epochs), text, encoder)
    stats = rec.fit(train, valid)
    done(f"train ({a.mode})", f"{stats['epochs']} epochs, best valid Recall@10 {stats['best_valid_recall']:.4f}, "
                              f"{stats['device']}{' bf16' if stats['bf16'] else ''}")
    rec.item_vectors()
    rec.user_vectors(seqs, np.arange(data.n_users), int(ts.max()))
    done("vectors of every item and user")
    total = time.perf_counter() - start
    device = pick_device()[0]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"\nmode: {a.mode}, device: {name}")
    print("| stage | s | notes |\n| --- | ---: | --- |")
    for stage, s, note in stages:
        print(f"| {stage} | {s:.1f} | {note} |")
    print(f"| **total** | **{total:.1f}** | {'target: under 300 s on 2 CPU cores' if a.mode == 'light' else ''} |")


if __name__ == "__main__":
    main()
