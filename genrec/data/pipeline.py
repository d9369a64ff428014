"""grain pipelines for next-item training and evaluation batches.

Training order is a function of (seed, global position) only: the same global batches come out whatever
the number of processes, and each process materialises only its own rows of each global batch. The
iterator state (grain's, JSON) goes into every checkpoint, so a resumed run continues the same stream.
"""

from __future__ import annotations

import grain
import numpy as np

from genrec.data.types import SeqData


def left_pad(seq: np.ndarray, length: int) -> np.ndarray:
  """The last `length` items of `seq`, left-padded with 0."""
  out = np.zeros(length, np.int32)
  tail = seq[-length:] if length else seq[:0]
  if len(tail):
    out[length - len(tail) :] = tail
  return out


class ProcessRows:
  """Process `index` of `count`'s view of a global stream: its contiguous slice of every global batch."""

  def __init__(self, order: grain.MapDataset, global_batch: int, index: int, count: int):
    self.order, self.global_batch, self.index, self.local = order, global_batch, index, global_batch // count

  def __len__(self):
    return len(self.order) // self.global_batch * self.local

  def __getitem__(self, j):
    g = (j // self.local) * self.global_batch + self.index * self.local + j % self.local
    return g, self.order[g]


def next_item_train(
  data: SeqData,
  *,
  max_len: int,
  global_batch: int,
  seed: int,
  window: str = "last",
  process_index: int = 0,
  process_count: int = 1,
  before: bool = False,
) -> grain.MapDataset:
  """Batches {"inputs", "targets", "input_times", "target_times"} of int32 [B_local, max_len] and "user"
  [B_local] (user index); `ds[step]` is the batch of that step. Times are seconds since the dataset's first
  interaction (`first_timestamp`). before=True adds "before" int32 [B_local, P]: the user's training items
  older than the row's window, 0-padded on the right to P (the most any row can have, at least 1).

  window="last": each user's most recent max_len+1 training items (SASRec's protocol);
  "random": a full-length window (max_len+1 items, or the whole sequence if shorter) at a uniformly drawn
  position — every slice of a long history gets trained on, and no row is wasted on padding.
  """
  if global_batch % process_count:
    raise ValueError(f"batch size {global_batch} does not divide over {process_count} processes")
  if window not in ("last", "random"):
    raise ValueError(f"data.train_window must be 'last' or 'random', got {window!r}")
  users = np.asarray([u for u in range(data.num_users) if len(data.train_sequence(u)) >= 2], np.int64)
  if len(users) == 0:
    raise ValueError(f"{data.name}: no user has 2 or more training interactions")
  sequences = [data.train_sequence(int(u)) for u in users]
  t0 = first_timestamp(data)
  times = [(data.timestamps[int(u)][: len(seq)] - t0).astype(np.int32) for u, seq in zip(users, sequences)]
  order = grain.MapDataset.range(len(users)).seed(seed).shuffle().repeat(None)
  rows = grain.MapDataset.source(ProcessRows(order, global_batch, process_index, process_count))
  before_len = max(1, max(len(s) for s in sequences) - max_len - 1)

  def make(example):
    g, i = example
    seq = sequences[i]
    end = len(seq)
    if window == "random" and end > max_len + 1:
      end = int(np.random.default_rng([seed, g]).integers(max_len + 1, end + 1))
    start = max(0, end - max_len - 1)
    row = {
      "inputs": left_pad(seq[start : end - 1], max_len),
      "targets": left_pad(seq[start + 1 : end], max_len),
      "input_times": left_pad(times[i][start : end - 1], max_len),
      "target_times": left_pad(times[i][start + 1 : end], max_len),
      "user": np.int32(users[i]),
    }
    if before:
      row["before"] = np.zeros(before_len, np.int32)
      row["before"][:start] = seq[:start]
    return row

  return rows.map(make).batch(global_batch // process_count, drop_remainder=True)


def first_timestamp(data: SeqData) -> int:
  return int(min(ts.min() for ts in data.timestamps if len(ts)))


def eval_examples(data: SeqData, split: str, *, max_len: int, users: np.ndarray | None = None):
  """Host arrays for every user of a split: history [U, L], seen [U, S] (the whole history), target [U],
  user [U], history_times [U, L] and target_time [U] (when the held-out interaction happened)."""
  users = data.eval_users(split) if users is None else np.asarray(users)
  seen_len = max(len(s) for s in data.sequences) - 1
  t0 = first_timestamp(data)
  history = np.zeros((len(users), max_len), np.int32)
  history_times = np.zeros((len(users), max_len), np.int32)
  seen = np.zeros((len(users), seen_len), np.int32)
  target = np.zeros(len(users), np.int32)
  target_time = np.zeros(len(users), np.int32)
  for row, u in enumerate(users):
    hist, target[row] = data.eval_example(int(u), split)
    ts = data.timestamps[int(u)] - t0
    history[row] = left_pad(hist, max_len)
    history_times[row] = left_pad(ts[: len(hist)], max_len)
    target_time[row] = ts[len(hist)]
    seen[row, : len(hist)] = hist
  return {
    "history": history,
    "seen": seen,
    "target": target,
    "user": users.astype(np.int32),
    "history_times": history_times,
    "target_time": target_time,
  }


def batches(arrays: dict[str, np.ndarray], batch_size: int):
  """Fixed-size batches (the last one padded by repeating row 0) with a boolean "valid" row mask."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < n
    idx = np.where(valid, idx, 0)
    yield {**{k: v[idx] for k, v in arrays.items()}, "valid": valid}


def item_batches(
  embeddings: np.ndarray, *, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1
) -> grain.MapDataset:
  """Shuffled catalogue items for content models: {"embedding": float32 [B, D], "item": int32 [B]} (items 1..N;
  row 0 of `embeddings` is padding and never drawn)."""
  if global_batch % process_count:
    raise ValueError(f"batch size {global_batch} does not divide over {process_count} processes")
  num_items = len(embeddings) - 1
  order = grain.MapDataset.range(num_items).seed(seed).shuffle().repeat(None)
  rows = grain.MapDataset.source(ProcessRows(order, global_batch, process_index, process_count))

  def make(example):
    item = example[1] + 1
    return {"embedding": embeddings[item], "item": np.int32(item)}

  return rows.map(make).batch(global_batch // process_count, drop_remainder=True)


def query_example(data: SeqData, user: int, *, max_len: int) -> dict[str, np.ndarray]:
  """A batch of one row asking for what comes after the user's whole history (not only the training part);
  the query time is that of the last interaction. Same fields as `eval_examples`, minus the target."""
  seq = data.sequences[user]
  ts = data.timestamps[user] - first_timestamp(data)
  return {
    "history": left_pad(seq, max_len)[None],
    "seen": seq[None].astype(np.int32),
    "user": np.array([user], np.int32),
    "history_times": left_pad(ts, max_len)[None].astype(np.int32),
    "target_time": np.array([ts[-1]], np.int32),
  }


def query_examples(data: SeqData, users: np.ndarray, *, max_len: int) -> dict[str, np.ndarray]:
  """`query_example` for many users at once: host arrays history [U, L], seen [U, S] (each whole history,
  0-padded to S, the longest in the dataset, so every batch has one shape), user [U], history_times [U, L] and
  target_time [U]."""
  users = np.asarray(users, np.int64)
  seen_len = max(len(s) for s in data.sequences)
  t0 = first_timestamp(data)
  history = np.zeros((len(users), max_len), np.int32)
  history_times = np.zeros((len(users), max_len), np.int32)
  seen = np.zeros((len(users), seen_len), np.int32)
  target_time = np.zeros(len(users), np.int32)
  for row, u in enumerate(users):
    seq, ts = data.sequences[int(u)], data.timestamps[int(u)] - t0
    history[row] = left_pad(seq, max_len)
    history_times[row] = left_pad(ts, max_len)
    target_time[row] = ts[-1]
    seen[row, : len(seq)] = seq
  return {
    "history": history,
    "seen": seen,
    "user": users.astype(np.int32),
    "history_times": history_times,
    "target_time": target_time,
  }
