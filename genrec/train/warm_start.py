"""Warm start (`genrec train SPEC --init-from RUN`): a new run begins from another run's parameters.

The optimizer state and step start fresh; the data may differ (that is the point: newer interactions). The
model config must match except for the sizes that follow the data (`GROWABLE`). Parameters whose logical axes
include `item` are matched row by row through the items' ids in the source files, so a catalogue that grew,
shrank or was renumbered keeps what the old run learned about every item it knew; rows of new items keep
their fresh initialisation. Row 0 (padding) and any special rows after the catalogue (e.g. a mask token)
carry over by position.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from genrec import config as config_lib
from genrec.config import ConfigError, ExperimentConfig

GROWABLE = ("num_items", "num_users", "semantic_ids_version")


def check_compatible(old: ExperimentConfig, new: ExperimentConfig, source) -> None:
  if old.model_name != new.model_name:
    raise ConfigError(f"--init-from {source}: it is a {old.model_name!r} run; this is {new.model_name!r}")
  a, b = config_lib.to_dict(old.model), config_lib.to_dict(new.model)
  free = GROWABLE + tuple(getattr(new.model, "warm_start_free", ()))  # e.g. CoLLM's training stage
  diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in free)
  if diff:
    shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
    raise ConfigError(
      f"--init-from {source}: the model config differs ({shown}); only {', '.join(free)} may change when warm starting"
    )


def item_rows(old_raw: list[str], new_raw: list[str], old_rows: int, new_rows: int) -> np.ndarray:
  """For each row of a new item-axis table, the old row it copies (-1: keep the fresh row)."""
  old_n, new_n = len(old_raw) - 1, len(new_raw) - 1
  lookup = {r: i for i, r in enumerate(old_raw) if i > 0}
  index = np.full(new_rows, -1, np.int64)
  index[0] = 0
  for j in range(1, min(new_n + 1, new_rows)):
    index[j] = lookup.get(new_raw[j], -1)
  for j in range(new_n + 1, new_rows):  # special rows after the catalogue, by position
    i = old_n + 1 + (j - new_n - 1)
    index[j] = i if i < old_rows else -1
  return index


def _item_axis(var) -> int | None:
  names = var.get_metadata().get("out_sharding") or ()
  return names.index("item") if "item" in names else None


def transfer(old_flat: dict, new_state, shardings, old_raw: list[str], new_raw: list[str], source):
  """new_state with every parameter (nnx.Param, trainable or frozen) taken from old_flat {path: Variable}, item
  rows matched by raw id. Other state (e.g. a retriever's item -> code table) keeps its fresh value: it
  follows the new data, not the old run."""
  import jax

  leaves, carried = [], None
  for path, var in nnx.to_flat_state(new_state):
    name = "/".join(map(str, path))
    if not isinstance(var, nnx.Param):
      leaves.append((path, var))
      continue
    if path not in old_flat:
      raise ConfigError(f"--init-from {source}: it has no parameter {name}")
    old = np.asarray(jax.device_get(old_flat[path].get_value()))
    axis = _item_axis(var)
    if axis is not None and (old.shape != var.shape or old_raw != new_raw):
      if old.shape[:axis] + old.shape[axis + 1 :] != var.shape[:axis] + var.shape[axis + 1 :]:
        raise ConfigError(
          f"--init-from {source}: parameter {name} has shape {old.shape}, this model "
          f"needs {var.shape}; only the item axis may differ"
        )
      index = item_rows(old_raw, new_raw, old.shape[axis], var.shape[axis])
      fresh = np.asarray(jax.device_get(var.get_value()))
      taken = np.take(old, np.maximum(index, 0), axis=axis)
      keep = (index >= 0).reshape([-1 if d == axis else 1 for d in range(old.ndim)])
      value = np.where(keep, taken, fresh)
      carried = int((index[1 : len(new_raw)] >= 0).sum())
    elif old.shape != var.shape:
      raise ConfigError(f"--init-from {source}: parameter {name} has shape {old.shape}, this model needs {var.shape}")
    else:
      value = old
    leaves.append((path, var.replace(value.astype(var.get_value().dtype))))
  state = nnx.from_flat_state(leaves)
  placed = jax.tree.map(lambda v, s: jax.device_put(v, s), state, shardings)
  return placed, carried


def warm_start(placed, cfg: ExperimentConfig, data, source, which: str = "best") -> dict:
  """Replaces placed.params with the parameters of run folder `source`; returns what was carried over."""
  from genrec.data import load_dataset
  from genrec.train.restore import restore

  run = restore(source, which=which, mesh=placed.mesh)
  check_compatible(run.config, cfg, source)
  old_raw = list(data.item_raw)
  if run.config.data != cfg.data:
    old_raw = list(load_dataset(run.config.data).item_raw)
  old_flat = {**dict(nnx.to_flat_state(run.placed.params)), **dict(nnx.to_flat_state(run.placed.other))}
  new_raw = list(data.item_raw)
  placed.params, carried = transfer(old_flat, placed.params, placed.param_shardings, old_raw, new_raw, source)
  placed.other, carried_other = transfer(old_flat, placed.other, placed.other_shardings, old_raw, new_raw, source)
  carried = carried if carried is not None else carried_other
  info = {"run": str(source), "which": which, "step": run.step}
  if carried is not None:
    info.update(items_carried=carried, items_new=len(data.item_raw) - 1 - carried)
  return info
