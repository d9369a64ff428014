"""The collaborative-filtering artifact a pointwise CF model leaves in its run folder for LLM-CF models.

    RUN/cf/users.npy   float32 [num_users, D]      row u = user index u of the dataset
    RUN/cf/items.npy   float32 [num_items + 1, D]  row i = item id i (row 0 = padding)
    RUN/cf/meta.json   {"model", "num_users", "num_items", "dim", "dataset", "format"}

Plain `.npy` arrays, read with `allow_pickle=False`; the file names are fixed (never taken from the meta)
and must resolve inside the run folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrec.files import atomic_write, inside

FOLDER = "cf"
FORMAT = "genrec-cf-1"


class CFArtifactError(ValueError):
  """A CF artifact is missing, damaged, or belongs to other data."""


def _folder(run_dir: str | Path) -> Path:
  run_dir = Path(run_dir)
  return inside(run_dir, FOLDER, "CF artifact folder")


def save_cf_artifact(run_dir: str | Path, users_UxD: np.ndarray, items_NxD: np.ndarray, *, model: str,
                     dataset: str) -> dict:
  """Writes RUN/cf/; returns what results.json records about it (paths relative to the run folder)."""
  users_UxD, items_NxD = np.asarray(users_UxD, np.float32), np.asarray(items_NxD, np.float32)
  if users_UxD.ndim != 2 or items_NxD.ndim != 2 or users_UxD.shape[1] != items_NxD.shape[1]:
    raise CFArtifactError(f"users {users_UxD.shape} and items {items_NxD.shape} must be [U, D] and [N+1, D]")
  folder = _folder(run_dir)
  folder.mkdir(parents=True, exist_ok=True)
  for name, array in (("users.npy", users_UxD), ("items.npy", items_NxD)):
    atomic_write(folder / name, lambda f, a=array: np.save(f, a, allow_pickle=False))
  meta = {"model": model, "num_users": users_UxD.shape[0], "num_items": items_NxD.shape[0] - 1,
          "dim": users_UxD.shape[1], "dataset": dataset, "format": FORMAT}
  atomic_write(folder / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
  return {**meta, "path": FOLDER}


def load_cf_artifact(run_dir: str | Path, data) -> tuple[np.ndarray, np.ndarray, dict]:
  """(users [U, D], items [N+1, D], meta) of RUN/cf/, checked against `data` (anything with num_users,
  num_items and name: the SeqData or pointwise set the caller trains on)."""
  folder = _folder(run_dir)
  paths = {name: folder / name for name in ("meta.json", "users.npy", "items.npy")}
  for name, path in paths.items():
    inside(run_dir, path, "CF artifact file")
    if not path.is_file():
      raise CFArtifactError(f"{run_dir} has no CF artifact: {path} is missing (train a pointwise CF model "
                            "such as mf with this --workdir first)")
  try:
    meta = json.loads(paths["meta.json"].read_text())
    users, items = (np.load(paths[n], allow_pickle=False) for n in ("users.npy", "items.npy"))
  except (ValueError, OSError) as e:
    raise CFArtifactError(f"{folder}: unreadable CF artifact ({e})") from None
  meta = meta if isinstance(meta, dict) else {}
  missing = sorted({"model", "num_users", "num_items", "dim", "dataset"} - set(meta))
  if meta.get("format") != FORMAT or missing:
    raise CFArtifactError(f"{paths['meta.json']}: not a {FORMAT} meta file (format {meta.get('format')!r}, "
                          f"missing keys {missing})")
  for name, arr, rows in (("users.npy", users, meta["num_users"]), ("items.npy", items, meta["num_items"] + 1)):
    if arr.dtype != np.float32 or arr.shape != (rows, meta["dim"]):
      raise CFArtifactError(f"{paths[name]}: {arr.dtype} {arr.shape}, but meta.json says float32 "
                            f"({rows}, {meta['dim']})")
  where = f"the CF artifact in {folder} (trained by {meta['model']} on {meta['dataset']})"
  if meta["num_users"] != data.num_users or meta["num_items"] != data.num_items:
    raise CFArtifactError(f"{where} covers {meta['num_users']} users and {meta['num_items']} items; "
                          f"{data.name} has {data.num_users} users and {data.num_items} items — retrain it on "
                          "the same data config")
  return users, items, meta
