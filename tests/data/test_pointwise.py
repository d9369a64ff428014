"""Pointwise examples: global-time split, labels from ratings, histories of earlier positives, ids shared with
SeqData — on a hand-worked toy file, on ml-100k against its raw file, and on the planted synthetic set.

The toy (ratings; positive = rating > 3), users a=0, b=1, c=2 and items i1..i4 = 1..4:
  global order (time, then user, then the user's file order on equal times), label, history (H=2):
   0 b i1 @5  5 +  [0 0]      5 b i3 @25 5 +  [0 1]
   1 a i1 @10 5 +  [0 0]      6 c i1 @30 4 +  [0 0]
   2 b i2 @10 2 -  [0 1]      7 c i2 @35 3 -  [0 1]
   3 a i2 @20 4 +  [0 1]      8 a i4 @40 5 +  [1 2]   <- valid (row 8 = 8*10//10 .. 9*10//10)
   4 a i3 @20 1 -  [1 2]      9 b i4 @50 4 +  [1 3]   <- test
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genrec.config import ConfigError, DataConfig
from genrec.data import DataError, load_dataset
from genrec.data.atomic import find_recbole_dataset, read_atomic
from genrec.data.pointwise import pointwise_data, pointwise_train
from genrec.data.preprocess import prepare

TOY = """user_id:token\titem_id:token\trating:float\ttimestamp:float
a\ti1\t5\t10
b\ti2\t2\t10
a\ti2\t4\t20
b\ti1\t5\t5
a\ti3\t1\t20
c\ti1\t4\t30
b\ti3\t5\t25
a\ti4\t5\t40
c\ti2\t3\t35
b\ti4\t4\t50
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  d = tmp_path_factory.mktemp("toy")
  (d / "toy.inter").write_text(TOY)
  cfg = DataConfig(dataset="atomic:toy", min_user_interactions=1, max_len=2)
  data = prepare(read_atomic(d, "toy"), cfg)
  return data, cfg


@pytest.fixture(scope="module")
def ml100k():
  if find_recbole_dataset("ml-100k") is None:
    pytest.skip("the offline ml-100k copy (recbole wheel) is not installed")
  cfg = DataConfig(dataset="ml-100k", max_len=10)
  data = load_dataset(cfg)
  return data, cfg, pointwise_data(data, cfg)


def test_toy_worked_example(toy):
  data, cfg = toy
  assert data.user_raw == ["a", "b", "c"] and data.item_raw == ["[PAD]", "i1", "i2", "i3", "i4"]
  assert [r.tolist() for r in data.ratings] == [[5, 4, 1, 5], [5, 2, 5, 4], [4, 3]]  # SeqData.ratings aligned
  p = pointwise_data(data, cfg)
  assert p.user.tolist() == [1, 0, 1, 0, 0, 1, 2, 2, 0, 1]
  assert p.item.tolist() == [1, 1, 2, 2, 3, 3, 1, 2, 4, 4]
  assert p.label.tolist() == [1, 1, 0, 1, 0, 1, 1, 0, 1, 1]
  assert p.history.tolist() == [[0, 0], [0, 0], [0, 1], [0, 1], [1, 2], [0, 1], [0, 0], [0, 1], [1, 2], [1, 3]]
  assert p.bounds == (8, 9) and p.split("valid")["item"].tolist() == [4] and p.split("test")["user"].tolist() == [1]
  longer = pointwise_data(data, dataclasses.replace(cfg, max_len=3))
  assert longer.history[-1].tolist() == [0, 1, 3]


def test_ml100k_split_is_global_time_80_10_10(ml100k):
  _, _, p = ml100k
  assert p.stats["examples"] == 100_000 and p.bounds == (80_000, 90_000)
  assert len(p.split("train")["user"]) == 80_000 and len(p.split("test")["label"]) == 10_000
  assert np.all(np.diff(p.time) >= 0)
  tie = np.diff(p.time) == 0
  assert np.all(np.diff(p.user)[tie] >= 0)  # equal times: by user index
  assert p.time[:80_000].max() <= p.time[80_000:90_000].min() and p.time[80_000:90_000].max() <= p.time[90_000:].min()


def test_ml100k_examples_match_the_raw_file_and_seqdata_ids(ml100k):
  data, _, p = ml100k
  raw = read_atomic(find_recbole_dataset("ml-100k"), "ml-100k").inter
  by_pair = {
    (u, i): (float(r), int(t))
    for u, i, r, t in zip(
      raw["user_id"].tolist(), raw["item_id"].tolist(), raw["rating"].tolist(), raw["timestamp"].tolist()
    )
  }
  assert len(by_pair) == 100_000  # ml-100k rates each (user, item) once
  user_raw, item_raw = np.asarray(data.user_raw), np.asarray(data.item_raw)
  got = [by_pair[(u, i)] for u, i in zip(user_raw[p.user].tolist(), item_raw[p.item].tolist())]
  np.testing.assert_array_equal(p.rating, [r for r, _ in got])
  np.testing.assert_array_equal(p.time, [t for _, t in got])
  np.testing.assert_array_equal(p.label, (p.rating > 3).astype(np.float32))
  assert p.item.min() >= 1 and p.item.max() == data.num_items and p.num_users == data.num_users
  for u in (0, 100, 942):  # the same interactions as SeqData's sequences
    assert sorted(p.item[p.user == u].tolist()) == sorted(data.sequences[u].tolist())


def test_ml100k_histories_are_earlier_positives_of_the_same_user(ml100k):
  _, _, p = ml100k
  row_of = {(u, i): r for r, (u, i) in enumerate(zip(p.user.tolist(), p.item.tolist()))}
  for r in np.random.default_rng(0).choice(len(p.user), 300, replace=False).tolist():
    u = p.user[r]
    earlier = [j for j in np.flatnonzero(p.user[:r] == u) if p.label[j] == 1]
    expected = [int(p.item[j]) for j in earlier[-10:]]
    assert p.history[r].tolist() == [0] * (10 - len(expected)) + expected
    for h in p.history[r][p.history[r] > 0].tolist():
      assert row_of[(u, h)] < r and p.label[row_of[(u, h)]] == 1


def test_planted_synthetic_is_deterministic_and_interleaved():
  cfg = DataConfig(dataset="synthetic", synthetic_users=200, synthetic_items=40, synthetic_length=20, max_len=5)
  data = load_dataset(cfg)
  a, b = pointwise_data(data, cfg), pointwise_data(data, cfg)
  np.testing.assert_array_equal(a.label, b.label)
  np.testing.assert_array_equal(a.history, b.history)
  other = pointwise_data(load_dataset(dataclasses.replace(cfg, seed=1)), dataclasses.replace(cfg, seed=1))
  assert not np.array_equal(a.item, other.item)
  assert a.num_users == data.num_users and a.num_items == data.num_items and a.item.min() >= 1
  assert all(len(set(a.item[a.user == u].tolist())) == 20 for u in range(5))  # distinct items per user
  assert 0.2 < a.label.mean() < 0.35  # ~1/4 match + 5% flips
  assert len(np.unique(a.split("test")["user"])) > 100  # users interleave in time: no cold split
  assert a.stats["test_cold_users"] == 0


def test_planted_labels_follow_hidden_clusters():
  # Every user rates every item here. Two users in one cluster agree on ~90% of items (agreement ~0.8);
  # users of different clusters agree on about half (~0). Labels drawn at random with the same positive rate
  # would put almost no pair above 0.6 and many in between.
  cfg = DataConfig(dataset="synthetic", synthetic_users=300, synthetic_items=40, synthetic_length=40)
  p = pointwise_data(load_dataset(cfg), cfg)
  liked = np.zeros((300, 41))
  liked[p.user, p.item] = 2 * p.label - 1  # +1 positive, -1 negative
  agreement = (liked @ liked.T / 40)[~np.eye(300, dtype=bool)]
  assert 0.15 < np.mean(agreement > 0.6) < 0.4  # ~1/4 of pairs share a cluster
  assert np.mean((agreement > 0.35) & (agreement < 0.6)) < 0.05


def test_errors_name_the_fix(toy, ml100k):
  data, cfg = toy
  with pytest.raises(DataError, match="has no ratings"):
    pointwise_data(dataclasses.replace(data, ratings=None), cfg)
  with pytest.raises(ConfigError, match="min_rating"):
    pointwise_data(load_dataset(DataConfig(dataset="ml-100k", min_rating=3)), DataConfig(min_rating=3))
  with pytest.raises(ConfigError, match="max_len"):
    pointwise_data(data, dataclasses.replace(cfg, max_len=0))


def test_train_batches_shard_over_processes(ml100k):
  _, _, p = ml100k
  whole = pointwise_train(p, global_batch=8, seed=0)
  halves = [pointwise_train(p, global_batch=8, seed=0, process_index=i, process_count=2) for i in range(2)]
  train = p.split("train")
  for step in (0, 1, 12_345):
    batch = whole[step]
    assert batch["history"].shape == (8, 10) and batch["label"].dtype == np.float32
    for k in batch:
      np.testing.assert_array_equal(np.concatenate([h[step][k] for h in halves]), batch[k])
    rows = [
      int(np.flatnonzero((train["user"] == u) & (train["item"] == i))[0]) for u, i in zip(batch["user"], batch["item"])
    ]
    np.testing.assert_array_equal(train["label"][rows], batch["label"])
    np.testing.assert_array_equal(train["history"][rows], batch["history"])
