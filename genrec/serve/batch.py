"""Recommendations for many users at once (`genrec recommend --users`, `Run.recommend_all`): fixed-size batches
of query rows, split over the mesh's data axes, through one compiled `model.recommend` per (run, k, batch
size). A row is what `Run.recommend` returns for that user: real items (ids 1..N, and the added ones), none the
user has seen, best first."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from genrec import extras
from genrec.data.pipeline import batches, query_examples
from genrec.files import atomic_write
from genrec.models import protocols
from genrec.train import sharding

FORMATS = (".jsonl", ".parquet")


def read_user_file(path: str | Path, data) -> list[int]:
  """User indices for a file of source-file user ids, one a line (blank lines skipped); an unknown id is an
  error naming its line."""
  path = Path(path)
  users = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    raw = line.strip()
    if not raw:
      continue
    try:
      users.append(data.user_index(raw))
    except KeyError:
      raise KeyError(
        f"{path} line {number}: unknown user {raw!r} in {data.name} ({data.num_users} users with enough interactions)"
      ) from None
  if not users:
    raise ValueError(f"{path} holds no user id (one source-file user id a line)")
  return users


def check_k(data, users: np.ndarray, k: int, num_added: int = 0) -> None:
  """k must fit every asked user: between 1 and the fewest items one of them has not seen."""
  catalogue = data.num_items + num_added
  unseen = np.array([catalogue - len(np.unique(data.sequences[int(u)])) for u in users])
  worst = int(np.argmin(unseen))
  if k < 1 or k > unseen[worst]:
    raise ValueError(
      f"k must be between 1 and {unseen[worst]}, the fewest items one of the asked users has not seen "
      f"(user {data.user_raw[int(users[worst])]}), got {k}"
    )


def recommend_rows(run, users: np.ndarray, k: int, *, batch_size: int = 256, progress: bool = False) -> Iterator[dict]:
  """{"user": raw id, "items": [raw ids], "scores": [floats]} for each of `users` (indices), in order."""
  if not protocols.provides(run.model, protocols.Recommender):
    raise ValueError(
      f"{run.config.model_name} is a pointwise model: it predicts P(like) for a (user, item) "
      "pair and does not rank the catalogue; `genrec eval` reports its AUC/UAUC"
    )
  if batch_size < 1:
    raise ValueError(f"batch size must be >= 1, got {batch_size}")
  data = run.dataset()
  users = np.asarray(users, np.int64)
  if len(users) == 0:
    raise ValueError("no users to recommend for")
  check_k(data, users, k, len(run.added))
  placed = run.placed
  dp = sharding.data_parallel_size(placed.mesh)
  batch_size = min(batch_size, len(users))
  batch_size = math.ceil(batch_size / dp) * dp  # every device gets the same number of rows
  search = _compiled_search(run, k)
  raw = data.item_raw + [a["item"] for a in run.added]
  examples = query_examples(data, users, max_len=run.config.data.max_len)
  from tqdm import tqdm

  with tqdm(total=len(users), desc="recommend", unit="user", disable=not progress, dynamic_ncols=True) as bar:
    for batch in batches(examples, batch_size):
      valid = batch.pop("valid")
      ids, scores = jax.device_get(search(batch))
      for u, row_ids, row_scores in zip(batch["user"][valid], ids[valid], scores[valid]):
        keep = row_ids > 0
        yield {
          "user": data.user_raw[int(u)],
          "items": [raw[i] for i in row_ids[keep].tolist()],
          "scores": [float(s) for s in row_scores[keep].tolist()],
        }
      bar.update(int(valid.sum()))


def search_one(run, user: int, k: int) -> tuple[list[int], list[float]]:
  """(item ids, scores) of one user (an index) through the run's compiled search, its row padded to the
  data-parallel devices (k already checked by the caller)."""
  dp = sharding.data_parallel_size(run.placed.mesh)
  examples = query_examples(run.dataset(), np.asarray([user]), max_len=run.config.data.max_len)
  batch = next(batches(examples, dp))
  batch.pop("valid")
  ids, scores = jax.device_get(_compiled_search(run, k)(batch))
  return ids[0].tolist(), scores[0].tolist()


def _compiled_search(run, k: int):
  """batch (host arrays) -> (ids [B, k], scores [B, k]), rows split over the data axes, results replicated.
  Kept on the run: later calls with the same k reuse the compiled search."""
  placed = run.placed
  cache = run.__dict__.setdefault("_searches", {})
  if (id(placed), k) in cache:
    return cache[id(placed), k]
  graphdef, params, other, rngs = placed.eval_graphdef, placed.params, placed.other, placed.rngs
  rows = sharding.batch_sharding(placed.mesh)

  def search(params, other, rngs, batch):
    return nnx.merge(graphdef, params, rngs, other).recommend(batch, k)

  jitted = jax.jit(search, out_shardings=sharding.replicated(placed.mesh))

  def run_batch(batch_np):
    batch = {n: jax.make_array_from_callback(v.shape, rows, lambda idx, v=v: v[idx]) for n, v in batch_np.items()}
    return jitted(params, other, rngs, batch)

  cache[id(placed), k] = run_batch
  return run_batch


def check_output(path: str | Path) -> Path:
  """The output file's format from its suffix, refused before any work when it cannot be written."""
  path = Path(path)
  if path.suffix not in FORMATS:
    raise ValueError(f"--out {path}: recommendations are written as FILE.jsonl or FILE.parquet")
  if path.suffix == ".parquet":
    extras.need("pyarrow", f"writing {path}; or write FILE.jsonl")
  if not path.parent.is_dir():
    raise FileNotFoundError(f"--out {path}: folder {path.parent} does not exist")
  return path


def write_rows(path: str | Path, rows: Iterable[dict]) -> Path:
  """JSON lines or parquet (columns user, items, scores) by suffix, written atomically."""
  path = check_output(path)
  if path.suffix == ".jsonl":
    return atomic_write(path, lambda f: f.writelines((json.dumps(r) + "\n").encode() for r in rows))
  pa = extras.need("pyarrow")
  pq = extras.need("pyarrow.parquet")

  rows = list(rows)
  table = pa.table(
    {
      "user": pa.array([r["user"] for r in rows], pa.string()),
      "items": pa.array([r["items"] for r in rows], pa.list_(pa.string())),
      "scores": pa.array([r["scores"] for r in rows], pa.list_(pa.float32())),
    }
  )
  return atomic_write(path, lambda f: pq.write_table(table, f))
