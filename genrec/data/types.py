"""What a prepared dataset is: the contract between `genrec.data` and everything that trains on it.

Ids: items are 1..num_items (0 is padding); users are 0..num_users-1. `*_raw` lists map back to the ids in
the source files ("42" in ml-100k.user). Sequences are chronological with a stable tie order (timestamp,
then file order).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SeqData:
  name: str
  num_items: int
  sequences: list[np.ndarray]  # per user: int32 item ids, chronological
  timestamps: list[np.ndarray]  # per user: int64 (float64 for fractional source times), aligned with sequences
  user_raw: list[str]  # user index -> id in the source files
  item_raw: list[str]  # item id -> id in the source files; item_raw[0] == "[PAD]"
  item_titles: list[str]  # item id -> display title ("" where unknown); [0] == ""
  item_text: list[str]  # item id -> text assembled from item fields (for content encoders)
  item_genres: np.ndarray | None  # [num_items+1, G] float32 multi-hot, or None
  genre_names: list[str]
  user_features: dict[str, list[str]]  # e.g. {"gender": [...], "age": [...]} per user index (group metrics)
  stats: dict[str, int]  # counts of what preprocessing dropped/kept
  ratings: list[np.ndarray] | None = None  # per user: float32 ratings aligned with sequences, when the source has them
  cold_items: np.ndarray | None = None  # int32 item ids held out of training (DataConfig.cold_items), sorted

  @property
  def num_users(self) -> int:
    return len(self.sequences)

  def user_index(self, raw: str) -> int:
    """The user index of a source-file user id; a clear error when it is unknown."""
    lookup = getattr(self, "_user_lookup", None)
    if lookup is None:
      lookup = {r: i for i, r in enumerate(self.user_raw)}
      object.__setattr__(self, "_user_lookup", lookup)
    if raw not in lookup:
      raise KeyError(f"unknown user {raw!r} in {self.name} ({self.num_users} users with enough interactions)")
    return lookup[raw]

  # Leave-one-out: last item -> test, second last -> valid, the rest -> train.
  def train_sequence(self, u: int) -> np.ndarray:
    return self.sequences[u][:-2]

  def trained_items(self) -> np.ndarray:
    """bool [N+1]: the items some training sequence holds (row 0, the padding, False); the others are new to
    a model trained on this data (cold-start items, items only in valid/test positions)."""
    trained = np.zeros(self.num_items + 1, bool)
    for u in range(self.num_users):
      trained[self.train_sequence(u)] = True
    trained[0] = False
    return trained

  def eval_users(self, split: str) -> np.ndarray:
    """The users evaluated on `split`: every user under leave-one-out (genrec.data.splits has the others)."""
    del split
    return np.arange(self.num_users)

  def eval_example(self, u: int, split: str) -> tuple[np.ndarray, int]:
    """(history, target) for split "valid" or "test"."""
    seq = self.sequences[u]
    if split == "valid":
      return seq[:-2], int(seq[-2])
    if split == "test":
      return seq[:-1], int(seq[-1])
    raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


@dataclasses.dataclass(frozen=True)
class RawTables:
  """Interactions and side tables as read from a source, before preprocessing.

  Canonical column names, whatever the source calls them:
    inter: "user_id" (str), "item_id" (str), "timestamp" (int64, or float64 when fractional), optional "rating"
      (float32); rows in file order.
    items: "item_id" (str) and optional "title" (str), "year" (str), "genres" (object array of list[str]),
      plus any other fields as str arrays.
    users: "user_id" (str) and feature columns as str arrays (ml-100k: "age", "gender", "occupation", "zip").
  `source` names the files for error messages.
  """

  name: str
  inter: dict[str, np.ndarray]
  items: dict[str, np.ndarray] | None
  users: dict[str, np.ndarray] | None
  source: str
