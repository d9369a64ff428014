"""Semantic-ID tables on the host: TIGER's collision digit and the statistics a tokenizer reports.

Rows are items in catalogue order; columns are code levels. NumPy only: this runs once per catalogue.
"""

from __future__ import annotations

import numpy as np


class CodeTableError(ValueError):
  pass


def _check(codes_NxL, codebook_size: int | None) -> np.ndarray:
  codes = np.asarray(codes_NxL)
  if codes.ndim != 2:
    raise CodeTableError(f"a code table is [num_items, levels]; got shape {codes.shape}")
  if codes.shape[0] == 0:
    raise CodeTableError("the code table is empty (0 items): nothing to tokenize")
  if codes.shape[1] == 0:
    raise CodeTableError("the code table has 0 levels")
  if not np.issubdtype(codes.dtype, np.integer):
    raise CodeTableError(f"codes must be integers; got dtype {codes.dtype}")
  limit = codebook_size if codebook_size is not None else np.iinfo(codes.dtype).max
  bad = np.argwhere((codes < 0) | (codes >= limit))
  if len(bad):
    item, level = (int(v) for v in bad[0])
    where = f"[0, {codebook_size})" if codebook_size is not None else "non-negative"
    raise CodeTableError(
      f"code {int(codes[item, level])} of item row {item} at level {level} is outside {where} "
      f"({len(bad)} bad codes in all)"
    )
  return codes


def group_rows(codes_NxL) -> tuple[np.ndarray, np.ndarray]:
  """(group id per row [N], rows per group [G]) for identical rows of non-negative integer codes; groups are
  numbered in the rows' lexicographic order (as np.unique(axis=0)). Each row becomes one int64 key when
  (max code + 1)^L fits, which sorts like the row and runs ~10x faster than np.unique(axis=0) at 1M rows."""
  codes = np.asarray(codes_NxL, np.int64)
  base = int(codes.max()) + 1 if codes.size else 1
  if codes.ndim == 2 and codes.shape[1] * np.log2(max(base, 2)) < 62:
    keys = np.zeros(len(codes), np.int64)
    for column in codes.T:
      keys = keys * base + column
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
  else:
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
  return inverse.reshape(-1), counts


def dedup_codes(codes_NxL, *, codebook_size: int | None = None, extra_size: int | None = None) -> np.ndarray:
  """Appends TIGER's extra digit: int32 [N, L + 1], unique per row.

  The digit counts earlier items (in row order) with the same tuple: the first gets 0, the next 1, and so on.
  `extra_size` bounds the digit to [0, extra_size) (the vocabulary the next stage reserves for it); a tuple
  shared by more items is an error naming the largest bucket.
  """
  codes = _check(codes_NxL, codebook_size)
  group_N, counts_G = group_rows(codes)
  order = np.argsort(group_N, kind="stable")  # items grouped, row order kept inside a group
  starts_G = np.concatenate([[0], np.cumsum(counts_G)[:-1]])
  extra = np.empty(len(codes), np.int64)
  extra[order] = np.arange(len(codes)) - starts_G[group_N[order]]
  if extra_size is not None and counts_G.max() > extra_size:
    g = int(counts_G.argmax())
    members = np.flatnonzero(group_N == g)
    raise CodeTableError(
      f"{int(counts_G.max())} items share the code tuple {tuple(int(c) for c in codes[members[0]])} (item rows "
      f"{', '.join(str(int(i)) for i in members[:8])}{', ...' if len(members) > 8 else ''}); the extra digit would "
      f"reach {int(counts_G.max()) - 1} but must stay below extra_size={extra_size}. Use more levels or larger "
      f"codebooks, or train the tokenizer longer"
    )
  return np.concatenate([codes, extra[:, None]], axis=1).astype(np.int32)


def _perplexity(counts: np.ndarray) -> float:
  p = counts[counts > 0] / counts.sum()
  return float(np.exp(-(p * np.log(p)).sum()))


def code_stats(codes_NxL, codebook_size: int) -> dict:
  """Collision and codebook statistics of a code table (JSON-ready Python numbers).

  collision_rate: fraction of items whose tuple another item shares; distinct_tuples; max_items_per_tuple;
  usage: per level, the fraction of the codebook_size codes used by some item; perplexity: per level,
  exp(entropy) of the code frequencies (codebook_size when all codes are used equally, 1 when one is).
  """
  codes = _check(codes_NxL, codebook_size)
  group_N, counts_G = group_rows(codes)
  per_level = [np.bincount(codes[:, level], minlength=codebook_size) for level in range(codes.shape[1])]
  return {
    "num_items": int(codes.shape[0]),
    "levels": int(codes.shape[1]),
    "distinct_tuples": int(len(counts_G)),
    "collision_rate": float((counts_G[group_N] > 1).mean()),
    "max_items_per_tuple": int(counts_G.max()),
    "usage": [float((c > 0).mean()) for c in per_level],
    "perplexity": [_perplexity(c) for c in per_level],
  }
