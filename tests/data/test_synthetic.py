from __future__ import annotations

import numpy as np
import pytest

from genrec.config import ConfigError, DataConfig
from genrec.data import load_dataset
from genrec.data.synthetic import SUCCESSOR_PROB, make_synthetic, planted_successor

CFG = DataConfig(dataset="synthetic", synthetic_users=400, synthetic_items=50, synthetic_length=25, seed=3)


def test_deterministic_by_seed():
  a, b = make_synthetic(CFG), make_synthetic(CFG)
  assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
  assert a.user_features == b.user_features
  c = make_synthetic(
    DataConfig(dataset="synthetic", synthetic_users=400, synthetic_items=50, synthetic_length=25, seed=4)
  )
  assert not all(np.array_equal(x, y) for x, y in zip(a.sequences, c.sequences))


def test_successor_rule_holds_at_planted_rate():
  data = make_synthetic(CFG)
  succ = planted_successor(CFG)
  assert sorted(succ[1:].tolist()) == list(range(1, 51))  # a permutation ...
  item, seen = 1, set()
  while item not in seen:
    seen.add(item)
    item = succ[item]
  assert len(seen) == 50  # ... that is one cycle
  seq_UxL = np.stack(data.sequences)
  rate = np.mean(succ[seq_UxL[:, :-1]] == seq_UxL[:, 1:])
  expected = SUCCESSOR_PROB + (1 - SUCCESSOR_PROB) / 50  # a random pick can land on the successor too
  assert abs(rate - expected) < 0.02
  # Popularity carries no signal: every item is about equally frequent.
  counts = np.bincount(seq_UxL.ravel(), minlength=51)[1:]
  assert counts.max() < 2 * counts.mean()


def test_shapes_and_side_information():
  data = make_synthetic(CFG)
  assert data.num_users == 400 and data.num_items == 50 and len(data.item_raw) == 51
  assert all(len(s) == 25 and s.dtype == np.int32 and s.min() >= 1 for s in data.sequences)
  assert all(np.all(np.diff(t) > 0) for t in data.timestamps)
  assert data.item_genres.shape == (51, len(data.genre_names)) and data.item_genres[1:].sum(1).min() == 1
  assert set(data.user_features["gender"]) == {"F", "M"} and len(data.item_text) == 51
  assert data.stats["interactions_kept"] == 400 * 25


def test_load_dataset_caches_and_validates():
  a = load_dataset(CFG)
  assert load_dataset(CFG.__class__(**{**CFG.__dict__, "max_len": 5, "kcore": 9})) is a
  with pytest.raises(ConfigError, match="synthetic_length=2"):
    make_synthetic(DataConfig(dataset="synthetic", synthetic_length=2))
