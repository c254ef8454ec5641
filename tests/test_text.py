"""The text encoder (a tiny BERT), item text, the text-vector cache and histories as model input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from nightrecs.models.data import DISLIKE, token
from nightrecs.models.text import TextTower, encode, item_text, pick_device
from nightrecs.tasks import layout
from nightrecs.tasks.catalog import load_sequences, price_bands, text_vectors
from nightrecs.tasks.storage import open_root


def test_texts():
    assert item_text("Shoe", "Shoes > Running", None, "nan") == "Shoe. Shoes > Running"
    assert item_text("Shoe", None, "Acme", "Light.", "high") == "Shoe. Acme. high price. Light."
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


def test_text_vectors_are_cached_per_model_and_text(tiny_model, tmp_path, caplog):
    root = open_root(str(tmp_path))
    texts = ["red shoe", "blue mat", "red shoe"]
    first, fp = text_vectors(root, texts, tiny_model)
    np.testing.assert_allclose(first, encode(TextTower(tiny_model), texts, 64), atol=1e-6)
    assert root.exists(layout.text_cache(fp))
    caplog.set_level("INFO", logger="nightrecs.tasks.catalog")
    again, _ = text_vectors(root, ["blue mat", "green lamp"], tiny_model)
    assert "1 of 2 texts cached, embedding 1" in caplog.text  # only the new text is embedded
    np.testing.assert_allclose(again[0], first[1], atol=1e-7)
    np.testing.assert_allclose(again[1], encode(TextTower(tiny_model), ["green lamp"], 64)[0], atol=1e-6)


def test_histories_become_sequences_with_types_and_dislikes(tmp_path):
    root = open_root(str(tmp_path))
    ts = pa.array([[1_000, 2_000, 3_000, 4_000], [5_000]], pa.list_(pa.timestamp("ms", tz="UTC")))
    root.write_parquet(layout.features("2026-03-10", "histories/part-0.parquet"), pa.table({
        "user_id": ["u1", "u2"], "item_ids": [["b", "gone", "a", "c"], ["a"]],
        "event_types": [["view", "click", "rating", "rating"], ["add_to_cart"]],
        "ratings": [[None, None, 5.0, 1.5], [None]], "weights": [[1.0, 2.0, 3.0, 3.0], [3.0]],
        "ts": ts, "last_ts": pa.array([4_000, 5_000], pa.timestamp("ms", tz="UTC"))}))
    users, seqs = load_sequences(root, "2026-03-10", pd.Series(["a", "b", "c"]), dislike_rating=2.0)
    assert users == ["u1", "u2"]
    assert [s.tolist() for s in seqs.items] == [[1, 0, 2], [0]]  # "gone" left the catalog
    # the event types survive (a rating is not an add_to_cart); a 1.5-star rating is a dislike
    assert [t.tolist() for t in seqs.types] == [[token("view"), token("rating"), DISLIKE], [token("add_to_cart")]]
    assert [t.tolist() for t in seqs.ts] == [[1, 3, 4], [5]]
    _, every_rating_counts = load_sequences(root, "2026-03-10", pd.Series(["a", "b", "c"]), dislike_rating=0.0)
    assert every_rating_counts.types[0].tolist()[-1] == token("rating")


def test_device_choice_matches_machine():
    device, dtype = pick_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (dtype is None) == (device.type == "cpu")
