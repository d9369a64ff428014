"""The evaluation splits of sequential data (`eval.split`), as views of one SeqData.

leave_one_out (SeqData itself): per user, the last interaction is the test target, the second last the
  validation target, the rest is training.
temporal (`temporal(data, cuts)`): one cut by global time for everybody (`eval.temporal_cuts`, fractions of all
  interactions in time order; default 0.8, 0.9). Interactions before the first cut train; a user's validation
  target is their first interaction in [cut 1, cut 2), their test target their first at or after cut 2; the
  history of a target is everything the user did before it (for the test target that includes the validation
  window). A user without an interaction before a target is not evaluated on it (nothing to condition on):
  users first seen after a cut are counted, not scored. Targets whose item no training sequence holds are
  counted too (no model trained on the training window can rank them well).

Ties at a cut: a cut is a timestamp t (that of the interaction at the fraction's rank in global time order);
an interaction at exactly t lies after the cut. Within a user, same-timestamp events keep file order.
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np

from genrec.config import ConfigError, EvalConfig
from genrec.data.types import SeqData
from genrec.errors import DataError

SPLITS = ("leave_one_out", "temporal")


@dataclasses.dataclass(frozen=True)
class TemporalSeqData(SeqData):
  """SeqData split by global time: `train_len[u]` interactions train; `target_pos[split][u]` is the position
  of the user's target in that split's window (-1: none); `cuts` the two cut timestamps."""

  train_len: np.ndarray = None  # int64 [U]
  target_pos: dict = None  # {"valid": int64 [U], "test": int64 [U]}
  cuts: tuple[int, int] = (0, 0)
  fractions: tuple[float, float] = (0.8, 0.9)

  def train_sequence(self, u: int) -> np.ndarray:
    return self.sequences[u][: self.train_len[u]]

  def eval_example(self, u: int, split: str) -> tuple[np.ndarray, int]:
    if split not in ("valid", "test"):
      raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    pos = int(self.target_pos[split][u])
    if pos < 1:
      raise ValueError(f"user {self.user_raw[u]!r} has no {split} target with a history under the temporal split")
    return self.sequences[u][:pos], int(self.sequences[u][pos])

  def eval_users(self, split: str) -> np.ndarray:
    return np.flatnonzero(self.target_pos[split] >= 1)

  def split_stats(self) -> dict:
    """What the cut did, for the printed protocol and results.json."""
    trained = self.trained_items()
    out = {
      "fractions": list(self.fractions),
      "cuts": [int(c) for c in self.cuts],
      "cuts_utc": [datetime.datetime.fromtimestamp(int(c), datetime.UTC).isoformat() for c in self.cuts],
      "train_interactions": int(self.train_len.sum()),
      "users_without_training": int((self.train_len == 0).sum()),
    }
    for split in ("valid", "test"):
      users = self.eval_users(split)
      targets = np.asarray([self.sequences[u][self.target_pos[split][u]] for u in users], np.int64)
      out[f"{split}_users"] = int(len(users))
      out[f"{split}_targets_unseen_in_training"] = int((~trained[targets]).sum()) if len(targets) else 0
      out[f"{split}_users_first_seen_in_window"] = int((self.target_pos[split] == 0).sum())  # not scored
    return out


def check(cfg: EvalConfig) -> None:
  if cfg.split not in SPLITS:
    raise ConfigError(f"eval.split must be one of {list(SPLITS)}, got {cfg.split!r}")
  a, b = cfg.temporal_cuts
  if not 0 < a < b < 1:
    raise ConfigError(f"eval.temporal_cuts must be two fractions 0 < a < b < 1 (e.g. 0.8,0.9), got {[a, b]}")


def temporal(data: SeqData, fractions: tuple[float, float] = (0.8, 0.9)) -> TemporalSeqData:
  """The temporal view of `data` (see the module docstring)."""
  every = np.sort(np.concatenate([ts for ts in data.timestamps if len(ts)]))
  cuts = tuple(int(every[min(int(f * len(every)), len(every) - 1)]) for f in fractions)
  train_len = np.asarray([np.searchsorted(ts, cuts[0], "left") for ts in data.timestamps], np.int64)
  second = np.asarray([np.searchsorted(ts, cuts[1], "left") for ts in data.timestamps], np.int64)
  lengths = np.asarray([len(s) for s in data.sequences], np.int64)
  target_pos = {
    "valid": np.where(train_len < second, train_len, -1),  # an interaction in [cut 1, cut 2)
    "test": np.where(second < lengths, second, -1),
  }
  base = {f.name: getattr(data, f.name) for f in dataclasses.fields(SeqData)}
  view = TemporalSeqData(**base, train_len=train_len, target_pos=target_pos, cuts=cuts, fractions=tuple(fractions))
  for split in ("valid", "test"):
    if len(view.eval_users(split)) == 0:
      raise DataError(
        f"{data.name}: eval.split=temporal with cuts {list(fractions)} leaves no user with a {split} target "
        "and an earlier interaction; move eval.temporal_cuts"
      )
  if not (train_len >= 2).any():
    raise DataError(f"{data.name}: eval.split=temporal leaves no user with 2 or more training interactions")
  return view


def apply(data: SeqData, cfg: EvalConfig) -> SeqData:
  """The view of `data` that `cfg.split` evaluates."""
  check(cfg)
  if cfg.split == "leave_one_out":
    return data
  if isinstance(data, TemporalSeqData) and data.fractions == tuple(cfg.temporal_cuts):
    return data
  if data.cold_items is not None:
    raise ConfigError("data.cold_items holds items out by leave-one-out; it needs eval.split=leave_one_out")
  return temporal(data, cfg.temporal_cuts)
