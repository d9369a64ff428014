"""Labelled (user, item) examples for pointwise click-through models (MF, CoLLM, TALLRec).

Protocol (CoLLM's): every rated interaction is one example, label = 1 when rating > `POSITIVE_ABOVE` (3, so
4 and 5 stars are positive), else 0. All interactions are sorted by GLOBAL time — timestamp, ties broken by
user index, then by the user's own chronological order (file order on equal timestamps) — and cut into
the first 80% (train), the next 10% (valid) and the last 10% (test): with M examples, train = [0, 8M//10),
valid = [8M//10, 9M//10), test = [9M//10, M). Valid/test users and items may be unseen in train (counted in
`stats`).
Each example carries `history`: the user's most recent H positive items strictly before it in that order
(whatever split they fall in: they happened earlier), left-padded int32 [H], 0 = padding; H = data.max_len.

Ids are those of the `SeqData` of the same DataConfig (users 0..U-1, items 1..N), so embeddings line up
with `item_titles`. The examples are the interactions that SeqData kept, with their ratings; preprocessing
must not drop ratings (data.min_rating would remove the negatives). data.dataset == "synthetic" gives a
planted set instead (see `planted_pointwise`).
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from genrec.config import ConfigError, DataConfig
from genrec.data.errors import DataError
from genrec.data.pipeline import ProcessRows
from genrec.data.types import SeqData

POSITIVE_ABOVE = 3.0  # label = rating > POSITIVE_ABOVE
SPLITS = ("train", "valid", "test")
PLANTED_CLUSTERS = 4
PLANTED_FLIP = 0.05  # fraction of planted labels flipped (noise)


@dataclasses.dataclass(frozen=True)
class PointwiseData:
  """Every example in global time order; `split(name)` gives the rows of one split."""

  name: str
  num_users: int
  num_items: int
  user: np.ndarray  # [M] int32, 0..num_users-1
  item: np.ndarray  # [M] int32, 1..num_items
  rating: np.ndarray  # [M] float32
  label: np.ndarray  # [M] float32, 1.0 = positive
  time: np.ndarray  # [M] int64 (source timestamps)
  history: np.ndarray  # [M, H] int32, left-padded, 0 = padding
  bounds: tuple[int, int]  # train = [:bounds[0]], valid = [bounds[0]:bounds[1]], test = [bounds[1]:]
  stats: dict[str, int | float]

  def rows(self, split: str) -> slice:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lo, hi = {"train": (0, self.bounds[0]), "valid": self.bounds, "test": (self.bounds[1], len(self.user))}[split]
    return slice(lo, hi)

  def split(self, split: str) -> dict[str, np.ndarray]:
    """{"user", "item", "label", "history"} of one split (views, in time order)."""
    r = self.rows(split)
    return {"user": self.user[r], "item": self.item[r], "label": self.label[r], "history": self.history[r]}


def pointwise_data(data: SeqData, cfg: DataConfig) -> PointwiseData:
  """The pointwise examples of `data` (prepared from `cfg`); a clear error when its ratings are missing."""
  if cfg.max_len < 1:
    raise ConfigError(f"data.max_len={cfg.max_len}: the pointwise history length must be >= 1")
  if cfg.dataset == "synthetic":
    points = planted_pointwise(cfg)
    if (points.num_users, points.num_items) != (data.num_users, data.num_items):
      raise DataError(
        f"the planted pointwise set has {points.num_users} users and {points.num_items} items; "
        f"the synthetic dataset has {data.num_users} and {data.num_items}"
      )
    return points
  if data.ratings is None:
    raise DataError(
      f"{data.name} has no ratings; pointwise labels (rating > {POSITIVE_ABOVE:g}) need a "
      "'rating' column in its interactions"
    )
  dropped = data.stats.get("interactions_dropped_rating", 0)
  if dropped:
    raise ConfigError(
      f"data.min_rating={cfg.min_rating:g} dropped {dropped} interactions of {data.name}, "
      "and low ratings are the pointwise negatives; set data.min_rating=0"
    )
  lengths = [len(s) for s in data.sequences]
  user = np.repeat(np.arange(data.num_users), lengths)
  position = np.concatenate([np.arange(n) for n in lengths])
  return build(
    data.name,
    data.num_users,
    data.num_items,
    user=user,
    item=np.concatenate(data.sequences),
    time=np.concatenate(data.timestamps),
    rating=np.concatenate(data.ratings),
    position=position,
    history_len=cfg.max_len,
  )


def build(
  name: str, num_users: int, num_items: int, *, user, item, time, rating, position, history_len: int
) -> PointwiseData:
  """Sorts interactions by (time, user, position), labels them, cuts 80/10/10, attaches histories.

  `position` orders a user's interactions with equal timestamps (their chronological index).
  """
  order = np.lexsort((position, user, time))
  user, item = user[order].astype(np.int32), item[order].astype(np.int32)
  time, rating = time[order].astype(np.int64), rating[order].astype(np.float32)
  label = (rating > POSITIVE_ABOVE).astype(np.float32)
  m = len(user)
  bounds = (m * 8 // 10, m * 9 // 10)
  history = _histories(user, item, label, num_users, history_len)
  stats = {"examples": m, "train": bounds[0], "valid": bounds[1] - bounds[0], "test": m - bounds[1]}
  train_users = np.zeros(num_users, bool)
  train_items = np.zeros(num_items + 1, bool)
  train_users[user[: bounds[0]]] = True
  train_items[item[: bounds[0]]] = True
  for split, r in (("train", slice(0, bounds[0])), ("valid", slice(*bounds)), ("test", slice(bounds[1], m))):
    stats[f"{split}_positive_rate"] = round(float(label[r].mean()), 4) if len(label[r]) else 0.0
    if split != "train":
      stats[f"{split}_cold_users"] = int(len(np.unique(user[r][~train_users[user[r]]])))
      stats[f"{split}_cold_items"] = int(len(np.unique(item[r][~train_items[item[r]]])))
  return PointwiseData(name, num_users, num_items, user, item, rating, label, time, history, bounds, stats)


def _histories(user, item, label, num_users: int, length: int) -> np.ndarray:
  """[M, length]: for each row, the user's last `length` positive items in earlier rows, left-padded."""
  history = np.zeros((len(user), length), np.int32)
  by_user = np.argsort(user, kind="stable")  # rows grouped by user, time order kept
  starts = np.searchsorted(user[by_user], np.arange(num_users + 1))
  for u in range(num_users):
    rows = by_user[starts[u] : starts[u + 1]]
    if not len(rows):
      continue
    positive = label[rows] > 0
    before = np.cumsum(positive) - positive  # positives strictly before each row
    padded = np.concatenate([np.zeros(length, np.int32), item[rows][positive]])
    history[rows] = np.lib.stride_tricks.sliding_window_view(padded, length)[before]
  return history


def planted_pointwise(cfg: DataConfig) -> PointwiseData:
  """Synthetic examples with planted structure, a function of `cfg.seed` only.

  Users and items each sit in one of `PLANTED_CLUSTERS` hidden clusters; each user rates
  `synthetic_length` distinct items at times spread over one shared period (so the global-time split
  interleaves users); the label is 1 when the clusters match, flipped with probability `PLANTED_FLIP`.
  Ratings are drawn to agree with the label (4-5 positive, 1-3 negative). A CF model can learn the
  clusters; popularity cannot (items are drawn uniformly). Ids match `make_synthetic(cfg)`.
  """
  n, num_users, length = cfg.synthetic_items, cfg.synthetic_users, cfg.synthetic_length
  if length > n or num_users < 1:
    raise ConfigError(
      f"data.synthetic_length={length} must be <= data.synthetic_items={n} (distinct items "
      f"per user) and data.synthetic_users={num_users} >= 1"
    )
  rng = np.random.default_rng((cfg.seed, 7))
  user_cluster = rng.integers(0, PLANTED_CLUSTERS, num_users)
  item_cluster = rng.integers(0, PLANTED_CLUSTERS, n + 1)
  item_UxL = np.argsort(rng.random((num_users, n)), axis=1)[:, :length] + 1
  label_UxL = (user_cluster[:, None] == item_cluster[item_UxL]) ^ (rng.random((num_users, length)) < PLANTED_FLIP)
  rating_UxL = np.where(label_UxL, rng.integers(4, 6, label_UxL.shape), rng.integers(1, 4, label_UxL.shape))
  time_UxL = np.sort(rng.integers(0, 10_000_000, (num_users, length)), axis=1) + 1_000_000_000
  user = np.repeat(np.arange(num_users), length)
  position = np.tile(np.arange(length), num_users)
  return build(
    "synthetic",
    num_users,
    n,
    user=user,
    item=item_UxL.ravel(),
    time=time_UxL.ravel(),
    rating=rating_UxL.ravel().astype(np.float32),
    position=position,
    history_len=cfg.max_len,
  )


def pointwise_train(
  points: PointwiseData, *, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1
) -> grain.MapDataset:
  """Shuffled training examples, `ds[step]` = this process's rows of that step's global batch:
  {"user": int32 [B], "item": int32 [B], "label": float32 [B], "history": int32 [B, H]}."""
  if global_batch % process_count:
    raise ValueError(f"batch size {global_batch} does not divide over {process_count} processes")
  train = points.split("train")
  if len(train["user"]) < global_batch:
    raise ValueError(f"{points.name}: {len(train['user'])} training examples, fewer than one batch of {global_batch}")
  order = grain.MapDataset.range(len(train["user"])).seed(seed).shuffle().repeat(None)
  rows = grain.MapDataset.source(ProcessRows(order, global_batch, process_index, process_count))
  return rows.map(lambda example: {k: v[example[1]] for k, v in train.items()}).batch(
    global_batch // process_count, drop_remainder=True
  )
