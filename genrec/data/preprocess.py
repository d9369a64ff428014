"""`RawTables` → `SeqData`: implicit feedback, k-core, chronological per-user sequences, item text.

Steps, in order: every interaction's item (user) must be listed in the item (user) table when there is one →
keep ratings >= min_rating (when ratings exist) → iterative k-core on users and items → drop users with fewer
than min_user_interactions → re-index what remains.
Ids: items 1..N and users 0..U-1 follow their order of first appearance in the side table when there is one,
else the natural order of raw ids (numerically when all ids are integers). Sequences are sorted by timestamp
with ties in file order (stable sort). Full histories are kept; `max_len` truncation belongs to the pipeline.
Rows repeating an earlier (user, item, timestamp) are kept as repeated events, counted in
stats["interactions_duplicate"] and warned about. Stats satisfy
`users_read == users_dropped_rating + users_dropped_kcore + users_dropped_short + users_kept` (and the same for
items and interactions).
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from genrec.config import DataConfig
from genrec.data.errors import DataError, DuplicateIdError, UnknownIdError
from genrec.data.types import RawTables, SeqData

# ml-100k spells its placeholder title "unkonwn".
UNKNOWN = frozenset({"", "unknown", "unkonwn", "n/a", "nan", "null"})
AGE_BUCKETS = ((17, "<18"), (24, "18-24"), (34, "25-34"), (44, "35-44"), (54, "45-54"))
_ITEM_TEXT_SKIP = ("item_id", "title", "year", "genres")


def prepare(raw: RawTables, cfg: DataConfig) -> SeqData:
  """Builds the prepared dataset; raises `DataError` naming the file and line of inconsistent input."""
  users = np.asarray(raw.inter["user_id"]).astype(str)
  items = np.asarray(raw.inter["item_id"]).astype(str)
  times = np.asarray(raw.inter["timestamp"])
  times = times if times.dtype.kind == "f" else times.astype(np.int64)  # fractional times stay as read
  item_table = _check_table(raw, "item", items)
  user_table = _check_table(raw, "user", users)

  user_keys, u_code = np.unique(users, return_inverse=True)
  item_keys, i_code = np.unique(items, return_inverse=True)
  u_code, i_code = u_code.ravel(), i_code.ravel()
  stats = {"interactions_read": len(users), "users_read": len(user_keys), "items_read": len(item_keys)}
  _count_duplicates(raw, stats, u_code, i_code, times)

  keep = np.ones(len(users), dtype=bool)
  if "rating" in raw.inter:
    keep = np.asarray(raw.inter["rating"], dtype=np.float64) >= cfg.min_rating
  _count_step(stats, "rating", u_code, i_code, np.ones_like(keep), keep)

  before = keep
  rounds = 0
  if cfg.kcore > 0:
    keep, rounds = _kcore(u_code, i_code, keep, cfg.kcore, len(user_keys), len(item_keys))
  stats["kcore_rounds"] = rounds
  _count_step(stats, "kcore", u_code, i_code, before, keep)

  before = keep
  per_user = np.bincount(u_code[keep], minlength=len(user_keys))
  keep = keep & (per_user[u_code] >= cfg.min_user_interactions)
  _count_step(stats, "short", u_code, i_code, before, keep)

  stats["interactions_kept"] = int(keep.sum())
  if not keep.any():
    raise DataError(
      f"{raw.name}: no user has >= {cfg.min_user_interactions} interactions after filtering "
      f"(min_rating={cfg.min_rating}, kcore={cfg.kcore}); counts: {stats}"
    )

  item_codes, item_new, item_rows = _reindex(i_code[keep], item_keys, item_table, start=1)
  user_codes, user_new, user_rows = _reindex(u_code[keep], user_keys, user_table, start=0)
  stats["users_kept"], stats["items_kept"] = len(user_codes), len(item_codes)

  uidx, iid, ts = user_new[u_code[keep]], item_new[i_code[keep]], times[keep]
  order = np.lexsort((ts, uidx))  # stable: equal (user, timestamp) keep file order
  bounds = np.cumsum(np.bincount(uidx, minlength=len(user_codes)))[:-1]
  sequences = np.split(iid[order].astype(np.int32), bounds)
  timestamps = np.split(ts[order], bounds)
  ratings = None
  if "rating" in raw.inter:
    ratings = np.split(np.asarray(raw.inter["rating"], np.float32)[keep][order], bounds)

  titles, text, genres, genre_names = _item_fields(raw.items, item_rows, len(item_codes))
  return SeqData(
    name=raw.name,
    num_items=len(item_codes),
    sequences=sequences,
    timestamps=timestamps,
    user_raw=user_keys[user_codes].tolist(),
    item_raw=["[PAD]"] + item_keys[item_codes].tolist(),
    item_titles=titles,
    item_text=text,
    item_genres=genres,
    genre_names=genre_names,
    user_features=_user_features(raw.users, user_rows),
    stats=stats,
    ratings=ratings,
  )


def _check_table(raw: RawTables, kind: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
  """(sorted unique ids of the side table, row of each), or None without a table.

  Rejects duplicate rows and interactions whose id the table does not list.
  """
  table = raw.items if kind == "item" else raw.users
  if table is None:
    return None
  table_ids = np.asarray(table[f"{kind}_id"]).astype(str)
  keys, rows, counts = np.unique(table_ids, return_index=True, return_counts=True)
  if (counts > 1).any():
    dup = keys[np.argmax(counts > 1)]
    lines = _lines(table, np.flatnonzero(table_ids == dup)[:2])
    raise DuplicateIdError(f"{kind} id '{dup}' appears twice in {_file(raw, kind)} ({' and '.join(lines)})")
  missing = ~np.isin(ids, keys)
  if missing.any():
    i = int(np.argmax(missing))
    where = _lines(raw.inter, [i])[0]
    raise UnknownIdError(
      f"{kind} id '{ids[i]}' in {_file(raw, 'inter')} ({where}) is not in {_file(raw, kind)} ({len(table_ids)} {kind}s)"
    )
  return keys, rows


def _reindex(codes: np.ndarray, keys: np.ndarray, table: tuple[np.ndarray, np.ndarray] | None, start: int):
  """(kept codes in new-id order, code -> new id, side-table row per kept code or None).

  `codes` index `keys` (sorted unique raw ids); new ids run from `start` in table order, else natural order.
  """
  kept = np.flatnonzero(np.bincount(codes, minlength=len(keys)))
  if table is None:
    kept = kept[_natural_order(keys[kept].tolist())]
    rows = None
  else:
    table_keys, table_rows = table
    rows = table_rows[np.searchsorted(table_keys, keys[kept])]
    order = np.argsort(rows, kind="stable")
    kept, rows = kept[order], rows[order]
  new = np.full(len(keys), -1, dtype=np.int64)
  new[kept] = np.arange(start, start + len(kept))
  return kept, new, rows


def _natural_order(ids: list[str]) -> np.ndarray:
  if all(re.fullmatch(r"-?\d+", s) for s in ids):
    return np.asarray(sorted(range(len(ids)), key=lambda j: int(ids[j])), dtype=np.int64)
  return np.argsort(np.asarray(ids, dtype=str), kind="stable")


def _count_duplicates(raw: RawTables, stats: dict, u_code, i_code, times) -> None:
  """Rows repeating an earlier row's (user, item, timestamp) are kept as repeated events: counted in
  stats["interactions_duplicate"] and warned about once."""
  order = np.lexsort((np.arange(len(times)), times, i_code, u_code))
  same = (np.diff(u_code[order]) == 0) & (np.diff(i_code[order]) == 0) & (np.diff(times[order]) == 0)
  repeats = order[1:][same]
  stats["interactions_duplicate"] = int(repeats.size)
  if repeats.size:
    where = _lines(raw.inter, [int(repeats.min())])[0]
    warnings.warn(
      f"{_file(raw, 'inter')}: {repeats.size} interaction(s) repeat an earlier row's user_id, item_id and "
      f"timestamp (the first at {where}); they are kept as repeated events and counted in "
      "stats['interactions_duplicate']: remove them from the file if they are copies",
      stacklevel=3,
    )


def _kcore(
  u_code: np.ndarray, i_code: np.ndarray, keep: np.ndarray, k: int, num_users: int, num_items: int
) -> tuple[np.ndarray, int]:
  """Drops users and items with < k interactions until none is left (interactions counted with repeats)."""
  rounds = 0
  while True:
    rounds += 1
    uc = np.bincount(u_code[keep], minlength=num_users)
    ic = np.bincount(i_code[keep], minlength=num_items)
    new = keep & (uc[u_code] >= k) & (ic[i_code] >= k)
    if new.sum() == keep.sum():
      return keep, rounds
    keep = new


def _count_step(stats: dict[str, int], step: str, u_code, i_code, before, after) -> None:
  stats[f"interactions_dropped_{step}"] = int(before.sum() - after.sum())
  distinct = lambda codes, mask: int(np.count_nonzero(np.bincount(codes[mask])))  # noqa: E731
  stats[f"users_dropped_{step}"] = distinct(u_code, before) - distinct(u_code, after)
  stats[f"items_dropped_{step}"] = distinct(i_code, before) - distinct(i_code, after)


def _file(raw: RawTables, kind: str) -> str:
  for part in raw.source.split(", "):
    if part.endswith(f".{kind}"):
      return os.path.basename(part)
  return f"the {raw.name} {'interactions' if kind == 'inter' else kind + ' table'}"


def _lines(table: dict[str, np.ndarray], rows) -> list[str]:
  if "_line" in table:
    return [f"line {int(table['_line'][r])}" for r in rows]
  return [f"row {int(r) + 1}" for r in rows]


def _known(v) -> str:
  v = str(v).strip()
  return "" if v.lower() in UNKNOWN else v


def _item_fields(items: dict[str, np.ndarray] | None, rows: np.ndarray | None, n: int):
  """(titles, text, genres multi-hot or None, genre names) for item ids 0..n; rows index the item table."""
  if items is None or rows is None:
    return [""] * (n + 1), [""] * (n + 1), None, []

  def col(name: str, empty) -> list:
    return np.asarray(items[name])[rows].tolist() if name in items else [empty] * n

  titles = [""] + [_known(t) for t in col("title", "")]
  years = [_known(y) for y in col("year", "")]
  genre_lists = [[g for g in gs if _known(g)] for gs in col("genres", [])]
  extras = [
    (k.replace("_", " ").capitalize(), col(k, "")) for k in items if k not in _ITEM_TEXT_SKIP and not k.startswith("_")
  ]

  text = [""]
  for j in range(n):
    title, year = titles[j + 1], years[j]
    parts = []
    year_ok = re.fullmatch(r"\d{4}", year) and f"({year})" not in title
    if title:
      parts.append(f"{title} ({year})" if year_ok else title)
    elif year_ok:
      parts.append(f"Year: {year}")
    if genre_lists[j]:
      parts.append("Genres: " + ", ".join(genre_lists[j]))
    for label, values in extras:
      v = values[j]
      v = " ".join(map(str, v)) if isinstance(v, (list, tuple)) else _known(v)
      if v:
        parts.append(f"{label}: {v}")
    text.append(" ".join(p if p[-1] in ".!?" else p + "." for p in parts))

  if "genres" not in items:
    return titles, text, None, []
  names = sorted({g for gs in genre_lists for g in gs})
  index = {g: k for k, g in enumerate(names)}
  multi_hot = np.zeros((n + 1, len(names)), dtype=np.float32)
  for j, gs in enumerate(genre_lists):
    multi_hot[j + 1, [index[g] for g in gs]] = 1.0
  return titles, text, multi_hot, names


def age_bucket(age: str) -> str:
  """ "24" -> "18-24"; ml-1m's codes (1, 18, 25, 35, 45, 50, 56) land in the matching buckets."""
  try:
    a = float(age)
  except ValueError:
    return age.strip() or "unknown"
  if not np.isfinite(a):
    return "unknown"
  for hi, label in AGE_BUCKETS:
    if a <= hi:
      return label
  return "55+"


def _user_features(users: dict[str, np.ndarray] | None, rows: np.ndarray | None) -> dict[str, list[str]]:
  """Per user index, every .user column as text ("unknown" where empty); age bucketed.

  Values are kept verbatim otherwise: ml-100k's occupation "none" is a real category.
  """
  if users is None or rows is None:
    return {}
  out = {}
  for k, values in users.items():
    if k == "user_id" or k.startswith("_"):
      continue
    vals = [str(v) for v in np.asarray(values)[rows]]
    out[k] = [age_bucket(v) for v in vals] if k == "age" else [v.strip() or "unknown" for v in vals]
  return out
