"""A synthetic dataset with planted sequential structure, for tests and smoke runs.

Items 1..N sit on a hidden cycle (a random permutation). Each user starts at a random item; each next item is
the cycle successor of the current one with probability `SUCCESSOR_PROB`, else uniform over all items. A
sequence model can learn the successor map; popularity cannot (every item is about equally popular).
Everything is a function of `cfg.seed`. Genres are contiguous arcs of the cycle; users get a gender and an age
bucket at random, so group metrics and diversity code run on it.
"""

from __future__ import annotations

import numpy as np

from genrec.config import ConfigError, DataConfig
from genrec.data.types import SeqData

SUCCESSOR_PROB = 0.9
NUM_GENRES = 4
_AGES = ("18-24", "25-34", "35-44")


def planted_successor(cfg: DataConfig) -> np.ndarray:
  """successor_N1[i]: the item that follows item i on the hidden cycle (int32, [num_items+1], [0] == 0)."""
  n = cfg.synthetic_items
  cycle = np.random.default_rng(cfg.seed).permutation(n) + 1
  succ = np.zeros(n + 1, dtype=np.int32)
  succ[cycle] = np.roll(cycle, -1)
  return succ


def make_synthetic(cfg: DataConfig) -> SeqData:
  """`cfg.synthetic_users` sequences of exactly `cfg.synthetic_length` items over `cfg.synthetic_items`."""
  n, num_users, length = cfg.synthetic_items, cfg.synthetic_users, cfg.synthetic_length
  if n < 2 or num_users < 1:
    raise ConfigError(f"data.synthetic_items must be >= 2 and data.synthetic_users >= 1, got {n} and {num_users}")
  if length < max(cfg.min_user_interactions, 1):
    raise ConfigError(
      f"data.synthetic_length={length} is shorter than data.min_user_interactions="
      f"{cfg.min_user_interactions}: every synthetic user would be dropped"
    )
  succ = planted_successor(cfg)
  rng = np.random.default_rng((cfg.seed, 1))
  follow_UxL = rng.random((num_users, length)) < SUCCESSOR_PROB
  noise_UxL = rng.integers(1, n + 1, (num_users, length))
  items_UxL = np.empty((num_users, length), dtype=np.int32)
  items_UxL[:, 0] = noise_UxL[:, 0]
  for t in range(1, length):
    items_UxL[:, t] = np.where(follow_UxL[:, t], succ[items_UxL[:, t - 1]], noise_UxL[:, t])
  start_U = 1_000_000_000 + rng.integers(0, 10_000_000, num_users)
  times_UxL = start_U[:, None] + np.cumsum(rng.integers(1, 3600, (num_users, length)), axis=1)

  # Genre = which of NUM_GENRES arcs of the cycle an item sits on.
  position = np.zeros(n + 1, dtype=np.int64)
  item = 1
  for k in range(n):
    position[item] = k
    item = succ[item]
  genre_of = position * NUM_GENRES // n
  genre_names = [f"genre_{chr(ord('a') + g)}" for g in range(NUM_GENRES)]
  genres = np.zeros((n + 1, NUM_GENRES), dtype=np.float32)
  genres[np.arange(1, n + 1), genre_of[1:]] = 1.0

  total = num_users * length
  stats = {
    "interactions_read": total,
    "users_read": num_users,
    "items_read": n,
    "interactions_kept": total,
    "users_kept": num_users,
    "items_kept": n,
    "kcore_rounds": 0,
  }
  for step in ("rating", "kcore", "short"):
    for what in ("interactions", "users", "items"):
      stats[f"{what}_dropped_{step}"] = 0
  return SeqData(
    name="synthetic",
    num_items=n,
    sequences=list(items_UxL),
    timestamps=list(times_UxL.astype(np.int64)),
    user_raw=[f"u{u}" for u in range(num_users)],
    item_raw=["[PAD]"] + [f"i{i}" for i in range(1, n + 1)],
    item_titles=[""] + [f"item {i}" for i in range(1, n + 1)],
    item_text=[""] + [f"Item {i}. Genres: {genre_names[genre_of[i]]}." for i in range(1, n + 1)],
    item_genres=genres,
    genre_names=genre_names,
    user_features={"gender": rng.choice(["F", "M"], num_users).tolist(), "age": rng.choice(_AGES, num_users).tolist()},
    stats=stats,
  )
