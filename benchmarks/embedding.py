"""Benchmark: bulk embedding of a generated catalog with all-MiniLM-L6-v2 (the embed step).

    python benchmarks/embedding.py [--items 20000] [--batch-sizes 128,512]

Generates ``--items`` demo-shop items, builds their item-tower text (title, category,
brand, price band, description) and embeds them with ``models.text.encode`` at each
batch size, on CUDA with bf16 autocast when present, else on the CPU. Before timing, one
small batch warms the device up. Prints a Markdown table of items per second; a
benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from nightrecs.models.text import TextTower, default_base_model, encode, item_text, pick_device
from nightrecs.tasks.catalog import price_bands
from nightrecs.tasks.demo_data import ShopSpec, make_catalog


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=20000)
    p.add_argument("--batch-sizes", default="128,512")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cat = make_catalog(ShopSpec(items=a.items), np.random.default_rng(0))
    cat["price_band"] = price_bands(cat["price"])
    texts = [item_text(*r) for r in cat[["title", "category", "brand", "description", "price_band"]]
             .itertuples(index=False)]
    tower = TextTower(default_base_model())
    encode(tower, texts[:256], max_tokens=64, desc="warm-up")
    device, amp = pick_device()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    rows = []
    for bs in (int(b) for b in a.batch_sizes.split(",")):
        start = time.perf_counter()
        vectors = encode(tower, texts, max_tokens=64, batch_size=bs, desc=f"embed (batch {bs})")
        seconds = time.perf_counter() - start
        rows.append((bs, seconds, len(texts) / seconds, float(np.linalg.norm(vectors, axis=1).mean())))
    print(f"\n{len(texts):,} item texts, device: {name}, autocast: {amp}")
    print("| batch size | s | items/s | mean vector norm |\n| ---: | ---: | ---: | ---: |")
    for bs, s, rate, norm in rows:
        print(f"| {bs} | {s:.1f} | {rate:,.0f} | {norm:.3f} |")


if __name__ == "__main__":
    main()
