"""The collaborative-filtering artifact a pointwise CF model leaves in its run folder for LLM-CF models: the run
artifact "cf" (`genrec.artifacts`) with two arrays,

    users  float32 [num_users, D]      row u = user index u of the dataset
    items  float32 [num_items + 1, D]  row i = item id i (row 0 = padding)

and meta {"model", "num_users", "num_items", "dim", "dataset"}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrec import artifacts
from genrec.errors import ArtifactError

CF = "cf"


class CFArtifactError(ArtifactError):
  """A CF artifact is missing, damaged, or belongs to other data."""


def save_cf_artifact(
  run_dir: str | Path, users_UxD: np.ndarray, items_NxD: np.ndarray, *, model: str, dataset: str
) -> dict:
  """Writes the run's CF artifact; returns what results.json records about it (its path relative to the run)."""
  users_UxD, items_NxD = np.asarray(users_UxD, np.float32), np.asarray(items_NxD, np.float32)
  if users_UxD.ndim != 2 or items_NxD.ndim != 2 or users_UxD.shape[1] != items_NxD.shape[1]:
    raise CFArtifactError(f"users {users_UxD.shape} and items {items_NxD.shape} must be [U, D] and [N+1, D]")
  meta = {
    "model": model,
    "num_users": users_UxD.shape[0],
    "num_items": items_NxD.shape[0] - 1,
    "dim": users_UxD.shape[1],
    "dataset": dataset,
  }
  written = artifacts.write(run_dir, CF, {"users": users_UxD, "items": items_NxD}, meta)
  return {**written, "path": f"{artifacts.FOLDER}/{CF}.json"}


def load_cf_artifact(run_dir: str | Path, data) -> tuple[np.ndarray, np.ndarray, dict]:
  """(users [U, D], items [N+1, D], meta) of a run's CF artifact, checked against `data` (anything with
  num_users, num_items and name: the SeqData or pointwise set the caller trains on)."""
  try:
    found = artifacts.read(
      run_dir, CF, what="CF artifact", hint="train a pointwise CF model such as mf with this --workdir first"
    )
  except ArtifactError as e:
    raise CFArtifactError(str(e)) from None
  meta, users, items = found.meta, found["users"], found["items"]
  missing = sorted({"model", "num_users", "num_items", "dim", "dataset"} - set(meta))
  if missing:
    raise CFArtifactError(f"the CF artifact of {run_dir} lacks the meta keys {missing}")
  for name, arr, rows in (("users", users, meta["num_users"]), ("items", items, meta["num_items"] + 1)):
    if arr.dtype != np.float32 or arr.shape != (rows, meta["dim"]):
      raise CFArtifactError(
        f"the CF artifact of {run_dir}: {name} is {arr.dtype} {arr.shape}, but its meta says "
        f"float32 ({rows}, {meta['dim']})"
      )
  where = f"the CF artifact of {run_dir} (trained by {meta['model']} on {meta['dataset']})"
  if meta["num_users"] != data.num_users or meta["num_items"] != data.num_items:
    raise CFArtifactError(
      f"{where} covers {meta['num_users']} users and {meta['num_items']} items; "
      f"{data.name} has {data.num_users} users and {data.num_items} items — retrain it on "
      "the same data config"
    )
  return users, items, meta
