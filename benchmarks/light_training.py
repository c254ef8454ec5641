"""Benchmark: `light` training plus embedding on MovieLens latest-small, end to end.

    python benchmarks/light_training.py [--epochs 40] [--valid-days 90]

Issue 4's target: under 5 minutes on 2 CPU cores. Times each stage from nothing cached:
loading the ratings, the all-MiniLM-L6-v2 vectors of every movie's text (computed here,
not read from a cache), training the two-tower model in light mode (frozen text encoder,
early stopping on the last ``--valid-days``), then the vectors of every item and user.
Prints a Markdown table; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from benchmarks.quality_study import movielens
from models.seqrec import EVENT_TYPES, ModelConfig, Recommender, Sequences, TrainConfig, time_split
from models.two_tower import TextTower, default_base_model, encode, pick_device

log = logging.getLogger("light_training")


def main() -> None:
    p = argparse.ArgumentParser()
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
    text = encode(TextTower(default_base_model()), data.item_text, max_tokens=64, desc="embed item texts")
    done("MiniLM vectors of every movie text", f"{text.shape[0]:,} x {text.shape[1]}")
    ts = data.ts.astype("int64")
    seqs = Sequences.from_events(data.user, data.item, np.full(len(ts), EVENT_TYPES.index("rating") + 1),
                                 ts, data.n_users)
    split = int(ts.max()) - a.valid_days * 86400
    train, valid = time_split(seqs, data.n_items, split)
    rec = Recommender(ModelConfig(n_items=data.n_items), TrainConfig(epochs=a.epochs), text)
    stats = rec.fit(train, valid)
    done("train (light)", f"{stats['epochs']} epochs, best valid Recall@10 {stats['best_valid_recall']:.4f}, "
                          f"{stats['device']}")
    rec.item_vectors()
    rec.user_vectors(seqs, np.arange(data.n_users), int(ts.max()))
    done("vectors of every item and user")
    total = time.perf_counter() - start
    print(f"\ndevice: {pick_device()[0]}, torch threads: {torch.get_num_threads()}")
    print("| stage | s | notes |\n| --- | ---: | --- |")
    for stage, s, note in stages:
        print(f"| {stage} | {s:.1f} | {note} |")
    print(f"| **total** | **{total:.1f}** | target: under 300 s |")


if __name__ == "__main__":
    main()
