"""Hand-built datasets for tests that compute the expected values by hand."""

from __future__ import annotations

import numpy as np

from genrec.data.types import SeqData


def hand_seq_data(sequences, timestamps=None, *, num_items: int | None = None, ratings=None) -> SeqData:
  """A SeqData of `sequences` (per user: item ids, chronological); timestamps default to 0, 1, 2, ... per user.
  Users are "u0", "u1", ...; items "i1".."iN" with empty titles and text."""
  n = num_items or max(max(s) for s in sequences)
  if timestamps is None:
    timestamps = [np.arange(len(s)) for s in sequences]
  return SeqData(
    name="hand",
    num_items=n,
    sequences=[np.asarray(s, np.int32) for s in sequences],
    timestamps=[np.asarray(t, np.int64) for t in timestamps],
    user_raw=[f"u{u}" for u in range(len(sequences))],
    item_raw=["[PAD]"] + [f"i{i}" for i in range(1, n + 1)],
    item_titles=[""] * (n + 1),
    item_text=[""] * (n + 1),
    item_genres=None,
    genre_names=[],
    user_features={},
    stats={},
    ratings=ratings,
  )
