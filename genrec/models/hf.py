"""Shared Hugging Face import helpers: find files, read safetensors (never pickle), place tensors by a name table.

A family's importer owns a table HF name → NNX state path and calls `module_from_tensors`, which checks the
names (missing/unexpected, each listed), builds the module abstractly (`nnx.eval_shape`, no random init) and
fills every parameter from its tensor after converting PyTorch layout to NNX layout:
`Linear.weight` [out, in] → kernel [in, out]; `Conv2d.weight` [out, in, kh, kw] → kernel [kh, kw, in, out];
anything else as is. A shape mismatch names the tensor and both shapes in HF layout.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec import extras

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
  """A checkpoint that does not fit its config (names the tensors) or a missing file (names the path)."""


def find_file(path: str | os.PathLike, name: str, what: str) -> Path:
  """`path` is a model folder or a file inside it; returns folder/name or raises naming what it is for."""
  path = Path(path).expanduser()
  folder = path if path.is_dir() else path.parent
  if not folder.exists():
    raise CheckpointError(f"model folder {folder} does not exist")
  found = folder / name
  if not found.is_file():
    present = sorted(p.name for p in folder.iterdir())
    raise CheckpointError(f"no {name} in {folder} ({what}); the folder holds {present}")
  return found


def read_json(file: str | os.PathLike) -> dict:
  try:
    return json.loads(Path(file).read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{file} is not valid JSON: {e}") from e


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of a .safetensors file as NumPy arrays (no pickle, no torch)."""
  SafetensorError = extras.need("safetensors", "Hugging Face weights").SafetensorError
  load_file = extras.need("safetensors.numpy", "Hugging Face weights").load_file

  path = Path(path)
  if path.is_dir():
    path = find_file(path, WEIGHTS, "the weights")
  try:
    return load_file(str(path))
  except (SafetensorError, OSError, TypeError) as e:
    raise CheckpointError(f"cannot read {path} as safetensors (bfloat16 tensors need a float32 export): {e}") from e


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
  """sha256 of a file's size, first and last MiB: cheap, and changes when the weights change."""
  path = Path(path)
  size = path.stat().st_size
  h = hashlib.sha256(str(size).encode())
  with path.open("rb") as f:
    h.update(f.read(chunk))
    if size > chunk:
      f.seek(max(chunk, size - chunk))
      h.update(f.read(chunk))
  return h.hexdigest()


def to_nnx_layout(path: tuple, value: np.ndarray) -> np.ndarray:
  """A PyTorch-layout tensor in the layout of the NNX variable at `path`."""
  if path[-1] == "kernel" and value.ndim == 2:
    return value.T
  if path[-1] == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  return value


def hf_shape(path: tuple, nnx_shape: tuple) -> tuple:
  """The PyTorch-layout shape of the NNX variable at `path` (the inverse of `to_nnx_layout`)."""
  if path[-1] == "kernel" and len(nnx_shape) == 2:
    return nnx_shape[::-1]
  if path[-1] == "kernel" and len(nnx_shape) == 4:
    return (nnx_shape[3], nnx_shape[2], nnx_shape[0], nnx_shape[1])
  return tuple(nnx_shape)


def check_names(
  tensors: Iterable[str], table: dict[str, tuple], *, source: str, what: str, ignored: Iterable[str] = ()
):
  """Raises listing every tensor `table` needs that is absent and every present one it does not know."""
  names = set(tensors)
  missing = sorted(set(table) - names)
  unexpected = sorted(names - set(table) - set(ignored))
  if missing or unexpected:
    raise CheckpointError(
      f"{source} does not match {what}: missing tensors {missing or 'none'}; unexpected tensors {unexpected or 'none'}"
    )


def module_from_tensors(
  build: Callable[[], nnx.Module],
  tensors: dict[str, np.ndarray],
  table: dict[str, tuple],
  *,
  source: str,
  what: str,
  ignored: Iterable[str] = (),
  dtype=jnp.float32,
):
  """`build()`'s module holding exactly `tensors` (HF names and layout), placed by `table` (HF name → NNX path).
  Every parameter of the module must appear in `table`."""
  check_names(tensors, table, source=source, what=what, ignored=ignored)
  graphdef, state = nnx.split(nnx.eval_shape(build))
  by_path = {path: name for name, path in table.items()}
  leaves = []
  for path, var in nnx.to_flat_state(state):
    if isinstance(var, nnx.Param):
      name = by_path[path]
      value = to_nnx_layout(path, tensors[name])
      if value.shape != var.shape:
        raise CheckpointError(
          f"{source}: tensor {name} has shape {tensors[name].shape} but the config implies "
          f"{hf_shape(path, var.shape)} (HF layout); is config.json the one these weights were saved with?"
        )
      var = var.replace(jnp.asarray(value, dtype))
    else:  # dropout's RNG state: a fresh key and counter (dropout is off for an imported encoder)
      is_key = jax.dtypes.issubdtype(var.get_value().dtype, jax.dtypes.prng_key)
      var = var.replace(jax.random.key(0) if is_key else jnp.zeros(var.shape, var.get_value().dtype))
    leaves.append((path, var))
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))
