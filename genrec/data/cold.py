"""The cold-start protocol (`DataConfig.cold_items`): a set of catalogue items held out of training.

    cold_N = choose_cold_items(num_items, fraction, seed)      # sorted int32 item ids
    data = hold_out(data, cold_N)                               # SeqData with data.cold_items == cold_N

Rule (also in `DataConfig`'s docstring and in every protocol printed with a result): each user's training part
(all items before the last two) loses its interactions with cold items; the last two interactions (the valid
and test cases) are kept as they are. So no training input or target is a cold item; a valid/test target may
be one — the evaluator reports those cases as the "cold" group, the others as "warm" — and a cold valid item
stays in the test history. Item ids do not change (cold items stay in the catalogue, scorable by any model
that can score an item it never trained on). A user whose training part empties keeps their valid/test cases.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from genrec.data.errors import DataError
from genrec.data.types import SeqData

RULE = (
  "interactions with cold items removed from every training position (all but each user's last two); "
  "valid/test interactions kept, a test case whose target is cold is in the 'cold' group"
)


def choose_cold_items(num_items: int, fraction: float, seed: int) -> np.ndarray:
  """round(fraction * num_items) distinct ids from 1..num_items, a function of (num_items, fraction, seed)."""
  if not 0.0 <= fraction < 1.0:
    raise DataError(f"data.cold_items must be a fraction of the catalogue in [0, 1), got {fraction}")
  count = int(round(fraction * num_items))
  if count < 1:
    raise DataError(
      f"data.cold_items={fraction} holds out no item of a catalogue of {num_items} "
      f"(round({fraction} * {num_items}) = 0); use a larger fraction or 0 to turn it off"
    )
  rng = np.random.default_rng([seed, 0xC01D])
  return np.sort(rng.choice(np.arange(1, num_items + 1), size=count, replace=False)).astype(np.int32)


def hold_out(data: SeqData, cold_N: np.ndarray) -> SeqData:
  """`data` with interactions of items `cold_N` removed from every training position (see the module rule)."""
  cold_N = np.unique(np.asarray(cold_N, np.int32))
  is_cold = np.zeros(data.num_items + 1, bool)
  is_cold[cold_N] = True
  sequences, timestamps, ratings, removed = [], [], [], 0
  for u, seq in enumerate(data.sequences):
    keep = np.ones(len(seq), bool)
    keep[:-2] = ~is_cold[seq[:-2]]
    removed += int((~keep).sum())
    sequences.append(seq[keep])
    timestamps.append(data.timestamps[u][keep])
    if data.ratings is not None:
      ratings.append(data.ratings[u][keep])
  stats = {**data.stats, "cold_items": int(len(cold_N)), "interactions_removed_cold": removed}
  return dataclasses.replace(
    data,
    sequences=sequences,
    timestamps=timestamps,
    stats=stats,
    cold_items=cold_N,
    ratings=ratings if data.ratings is not None else None,
  )


def is_cold(data: SeqData, items) -> np.ndarray:
  """Boolean array shaped like `items`: which are held-out items of `data` (all False without the protocol)."""
  items = np.asarray(items)
  if data.cold_items is None:
    return np.zeros(items.shape, bool)
  return np.isin(items, data.cold_items)
