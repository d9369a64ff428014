from __future__ import annotations

import json

import grain
import numpy as np
import pytest

from fixtures_data import hand_seq_data
from genrec.config import DataConfig
from genrec.data import pipeline
from genrec.data.pipeline import batches, eval_examples, left_pad, next_item_train
from genrec.data.synthetic import make_synthetic

_seq_data = hand_seq_data


# User u holds items 100u+1, 100u+2, ... so a row's items name its user. User 1 has one training item only.
LENGTHS = [6, 3, 10, 5, 4, 7, 9, 6]
DATA = _seq_data([list(range(100 * u + 1, 100 * u + 1 + n)) for u, n in enumerate(LENGTHS)])
TRAIN_USERS = [u for u, n in enumerate(LENGTHS) if n - 2 >= 2]
L = 4


def _user_of(row_inputs: np.ndarray, row_targets: np.ndarray) -> int:
  items = np.concatenate([row_inputs, row_targets])
  users = set((items[items > 0] - 1) // 100)
  assert len(users) == 1, f"a row mixes users {users}"
  return int(users.pop())


def _rows(ds, steps: int) -> tuple[np.ndarray, np.ndarray]:
  got = [ds[s] for s in range(steps)]
  return np.concatenate([b["inputs"] for b in got]), np.concatenate([b["targets"] for b in got])


# -- left_pad --------------------------------------------------------------------------------------------------


def test_left_pad():
  out = left_pad(np.array([1, 2, 3]), 5)
  assert out.dtype == np.int32 and out.tolist() == [0, 0, 1, 2, 3]
  assert left_pad(np.array([1, 2, 3, 4, 5, 6]), 4).tolist() == [3, 4, 5, 6]
  assert left_pad(np.array([7, 8]), 2).tolist() == [7, 8]
  assert left_pad(np.array([], np.int32), 3).tolist() == [0, 0, 0]
  assert left_pad(np.array([1, 2]), 0).shape == (0,)


# -- training stream -------------------------------------------------------------------------------------------


def test_last_window_rows_are_shifted_left_padded_training_items():
  ds = next_item_train(DATA, max_len=L, global_batch=3, seed=0)
  batch = ds[0]
  assert set(batch) == {"inputs", "targets", "input_times", "target_times", "user"}
  # The hand data's timestamps are positions (first interaction at 0): times track the items exactly.
  rows = zip(batch["inputs"], batch["targets"], batch["input_times"], batch["target_times"], batch["user"])
  for x, y, tx, ty, user in rows:
    u = _user_of(x, y)
    assert user == u
    assert (tx[x > 0] == x[x > 0] - 100 * u - 1).all() and (ty[y > 0] == y[y > 0] - 100 * u - 1).all()
    assert (tx[x == 0] == 0).all()
  assert batch["inputs"].shape == batch["targets"].shape == (3, L) and batch["inputs"].dtype == np.int32
  inputs, targets = _rows(ds, 7)
  for x, y in zip(inputs, targets):
    u = _user_of(x, y)
    train = DATA.sequences[u][:-2]
    window = train[-(L + 1) :]
    np.testing.assert_array_equal(x, left_pad(window[:-1], L))
    np.testing.assert_array_equal(y, left_pad(window[1:], L))
    # Never the valid/test items.
    assert not set(DATA.sequences[u][-2:]) & set(np.concatenate([x, y]).tolist())


@pytest.mark.parametrize("window", ["last", "random"])
def test_before_holds_the_training_items_older_than_the_window(window):
  """before + the window's inputs is the user's training sequence up to the last target; the same rows as
  without it; P = the longest training sequence minus a full window (10 - 2 - 5 = 3 here)."""
  plain = next_item_train(DATA, max_len=L, global_batch=4, seed=0, window=window)
  ds = next_item_train(DATA, max_len=L, global_batch=4, seed=0, window=window, before=True)
  older = 0
  for step in range(10):
    batch, same = ds[step], plain[step]
    assert batch["before"].shape == (4, 3) and batch["before"].dtype == np.int32
    for key in same:
      np.testing.assert_array_equal(batch[key], same[key])
    for b, x, y in zip(batch["before"], batch["inputs"], batch["targets"]):
      train = DATA.sequences[_user_of(x, y)][:-2].tolist()
      end = train.index(int(y[-1]))
      assert b[b > 0].tolist() + x[x > 0].tolist() == train[:end]
      assert (b[len(b[b > 0]) :] == 0).all()  # 0-padded on the right
      older += int((b > 0).any())
  assert older  # some rows do have older items


def test_last_window_each_training_user_once_per_epoch():
  ds = next_item_train(DATA, max_len=L, global_batch=2, seed=5)
  n = len(TRAIN_USERS)
  inputs, targets = _rows(ds, n)  # 2n rows: two epochs, an epoch ends mid-batch
  users = [_user_of(x, y) for x, y in zip(inputs, targets)]
  assert sorted(users[:n]) == TRAIN_USERS and sorted(users[n:]) == TRAIN_USERS
  assert 1 not in users  # one training item cannot make a (input, target) pair
  assert users[:n] != users[n:]  # each epoch is shuffled afresh


def test_stream_is_deterministic_by_seed():
  a = _rows(next_item_train(DATA, max_len=L, global_batch=2, seed=1, window="random"), 8)
  b = _rows(next_item_train(DATA, max_len=L, global_batch=2, seed=1, window="random"), 8)
  c = _rows(next_item_train(DATA, max_len=L, global_batch=2, seed=2, window="random"), 8)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_random_window_is_a_contiguous_slice_of_training_items():
  ds = next_item_train(DATA, max_len=L, global_batch=4, seed=0, window="random")
  inputs, targets = _rows(ds, 40)  # about 23 rows per user
  ends = {u: set() for u in TRAIN_USERS}
  for x, y in zip(inputs, targets):
    u = _user_of(x, y)
    train = DATA.sequences[u][:-2].tolist()
    end = train.index(int(y[-1])) + 1  # the window ends at the target of the last position
    window = np.asarray(train[max(0, end - L - 1) : end])
    np.testing.assert_array_equal(x, left_pad(window[:-1], L))
    np.testing.assert_array_equal(y, left_pad(window[1:], L))
    ends[u].add(end)
  # Windows are full length (L+1 items, or the whole history if shorter): ends lie in [min(n, L+1), n] for
  # n training items, both extremes are drawn, and a long history's window changes between epochs.
  n_train = {u: LENGTHS[u] - 2 for u in TRAIN_USERS}
  longer = [u for u in TRAIN_USERS if n_train[u] > L + 1]
  assert longer
  assert all(ends[u] <= set(range(min(n_train[u], L + 1), n_train[u] + 1)) for u in TRAIN_USERS)
  assert all(ends[u] == {n_train[u]} for u in TRAIN_USERS if u not in longer)
  assert all(len(ends[u]) >= 2 for u in longer)
  assert any(L + 1 in ends[u] for u in longer) and any(n_train[u] in ends[u] for u in longer)


@pytest.mark.parametrize("window", ["last", "random"])
def test_process_rows_concatenate_to_the_global_batch(window):
  data = make_synthetic(DataConfig(dataset="synthetic", synthetic_users=37, synthetic_items=20, synthetic_length=9))
  kw = dict(max_len=5, global_batch=8, seed=3, window=window)
  one = next_item_train(data, **kw)
  procs = [next_item_train(data, process_index=p, process_count=2, **kw) for p in range(2)]
  for s in range(12):  # past the end of the first epoch (37 users)
    parts = [p[s] for p in procs]
    assert all(part["inputs"].shape == (4, 5) for part in parts)
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), one[s][key])


def test_each_process_materialises_only_its_rows(monkeypatch):
  calls = []
  real = pipeline.left_pad
  monkeypatch.setattr(pipeline, "left_pad", lambda seq, n: calls.append(1) or real(seq, n))
  ds = next_item_train(DATA, max_len=L, global_batch=6, seed=0, process_index=1, process_count=3)
  assert ds[4]["inputs"].shape == (2, L)
  assert len(calls) == 2 * 4  # 4 arrays for each of its 2 rows, not all 6


# Threaded prefetch as in training (the state must count consumed, not prefetched, batches), but a small
# buffer: grain's default prefetches 500 batches per iterator, seconds of work in a test.
READ = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def test_iterator_state_round_trips_through_json():
  ds = next_item_train(DATA, max_len=L, global_batch=3, seed=4, window="random")
  it = iter(ds.to_iter_dataset(READ))
  for s in range(3):
    got = next(it)
    np.testing.assert_array_equal(got["inputs"], ds[s]["inputs"])  # ds[step] is the batch of that step
  state = json.loads(json.dumps(it.get_state()))
  expected = next(it)
  fresh = next_item_train(DATA, max_len=L, global_batch=3, seed=4, window="random")
  resumed = iter(fresh.to_iter_dataset(READ))
  resumed.set_state(state)
  got = next(resumed)
  for key in ("inputs", "targets"):
    np.testing.assert_array_equal(got[key], expected[key])
    np.testing.assert_array_equal(got[key], ds[3][key])
  assert not np.array_equal(got["inputs"], ds[2]["inputs"])


def test_train_stream_validates_arguments():
  with pytest.raises(ValueError, match="divide"):
    next_item_train(DATA, max_len=L, global_batch=5, seed=0, process_count=2)
  with pytest.raises(ValueError, match="train_window"):
    next_item_train(DATA, max_len=L, global_batch=2, seed=0, window="first")
  with pytest.raises(ValueError, match="2 or more training"):
    next_item_train(_seq_data([[1, 2, 3], [4, 5, 6]]), max_len=L, global_batch=2, seed=0)


# -- evaluation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split,cut", [("valid", 2), ("test", 1)])
def test_eval_examples_history_seen_target(split, cut):
  ex = eval_examples(DATA, split, max_len=L)
  assert set(ex) == {"history", "seen", "target", "user", "history_times", "target_time"}
  seen_width = max(LENGTHS) - 1
  assert ex["history"].shape == (len(LENGTHS), L) and ex["seen"].shape == (len(LENGTHS), seen_width)
  assert ex["user"].tolist() == list(range(len(LENGTHS)))
  for u, seq in enumerate(DATA.sequences):
    hist = seq[:-cut]
    assert ex["target"][u] == seq[-cut]
    np.testing.assert_array_equal(ex["history"][u], left_pad(hist, L))
    np.testing.assert_array_equal(ex["history_times"][u], left_pad(np.arange(len(hist)), L))
    assert ex["target_time"][u] == len(seq) - cut
    np.testing.assert_array_equal(ex["seen"][u, : len(hist)], hist)  # the full history, not cut to max_len
    assert not ex["seen"][u, len(hist) :].any()
    assert ex["target"][u] not in ex["seen"][u]


def test_eval_seen_holds_a_repeated_target_and_users_pick_rows():
  data = _seq_data([[1, 2, 3, 4], [5, 6, 5, 7, 5]])
  ex = eval_examples(data, "test", max_len=3, users=np.array([1, 0]))
  assert ex["user"].tolist() == [1, 0] and ex["target"].tolist() == [5, 4]
  assert ex["history"][0].tolist() == [6, 5, 7] and ex["history"][1].tolist() == [1, 2, 3]
  assert ex["seen"][0].tolist() == [5, 6, 5, 7] and 5 in ex["seen"][0]
  valid = eval_examples(data, "valid", max_len=3)
  assert valid["target"].tolist() == [3, 7] and valid["seen"][1].tolist() == [5, 6, 5, 0]
  with pytest.raises(ValueError, match="split"):
    eval_examples(data, "train", max_len=3)


def test_batches_pad_the_last_batch_and_mark_valid_rows():
  arrays = {"a": np.arange(5) + 10, "b": np.arange(10).reshape(5, 2)}
  out = list(batches(arrays, 2))
  assert len(out) == 3 and all(b["a"].shape == (2,) and b["b"].shape == (2, 2) for b in out)
  assert [b["valid"].tolist() for b in out] == [[True, True], [True, True], [True, False]]
  np.testing.assert_array_equal(np.concatenate([b["a"][b["valid"]] for b in out]), arrays["a"])
  np.testing.assert_array_equal(np.concatenate([b["b"][b["valid"]] for b in out]), arrays["b"])
  assert out[-1]["a"][1] == arrays["a"][0]  # padding repeats a real row: no out-of-range ids
  exact = list(batches(arrays, 5))
  assert len(exact) == 1 and exact[0]["valid"].all()
