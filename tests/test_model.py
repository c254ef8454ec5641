"""The two-tower model and its training loop, on a tiny BERT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models.two_tower import TextTower, TrainConfig, encode, item_text, pick_device, train, training_pairs, user_text
from tasks.catalog import price_bands


def test_training_pairs_use_only_the_past():
    pairs = training_pairs([[1, 2, 3, 4], [7]], history_len=2)
    assert pairs == [((1,), 2), ((1, 2), 3), ((2, 3), 4)]


def test_texts():
    assert item_text("Shoe", "Shoes > Running", None, "nan") == "Shoe. Shoes > Running"
    assert item_text("Shoe", None, "Acme", "Light.", "high") == "Shoe. Acme. high price. Light."
    assert user_text(["a", "b", "c"], history_len=2) == "c | b"
    assert price_bands(pd.Series([1.0, 2.0, 3.0, None])).tolist() == ["low", "mid", "high", None]
    assert price_bands(pd.Series([None, None], dtype=float)).tolist() == [None, None]


def test_encode_is_normalised_and_order_independent(tiny_model):
    tower = TextTower(tiny_model)
    texts = ["a red running shoe", "x", "a long " * 30 + "text"]
    v = encode(tower, texts, max_tokens=32, batch_size=2)
    assert v.shape == (3, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    single = encode(tower, texts[1:2], max_tokens=32)
    np.testing.assert_allclose(single[0], v[1], atol=1e-5)


def test_training_learns_the_next_item(tiny_model):
    """Items come in families; histories stay inside a family, so the loss must fall."""
    families = ["running shoe", "yoga mat", "chef knife", "desk lamp"]
    titles = [f"{f} model {k}" for f in families for k in range(6)]
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(np.arange(6) + 6 * f, 5, replace=False)) for f in range(4) for _ in range(10)]
    tower = TextTower(tiny_model)
    before = {k: v.clone() for k, v in tower.encoder.state_dict().items()}
    cfg = TrainConfig(steps=40, batch_size=8, lr=2e-3, warmup_steps=2, max_user_tokens=32, max_item_tokens=16)
    stats = train(tower, titles, titles, histories, cfg)
    assert stats["steps"] == 40 and stats["pairs"] == 160
    assert stats["loss"] < stats["loss_first"] * 0.8
    assert any(not torch.equal(before[k], v.cpu()) for k, v in tower.encoder.state_dict().items())


def test_save_version_hashes_weights(tiny_model, tmp_path):
    tower = TextTower(tiny_model)
    a = tower.save(tmp_path / "a", {"date": "2026-01-01"})
    b = tower.save(tmp_path / "b", {"date": "2026-01-02"})
    assert a["version"] == b["version"] and a["version"].startswith("m-")
    reloaded = TextTower(tmp_path / "a")
    x = encode(reloaded, ["hello"], 16)
    np.testing.assert_allclose(x, encode(tower, ["hello"], 16), atol=1e-6)


def test_device_choice_matches_machine():
    device, dtype = pick_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (dtype is None) == (device.type == "cpu")
