"""`genrec export RUN --out DIR`: a run's recommender as a `jax.export` artifact that needs only jax and numpy.

    DIR/recommend.jax   Exported.serialize() of (params, history, seen[, extra inputs]) -> (ids [b, k], scores)
    DIR/params.npz      the parameters it takes, one array per name (np.load(..., allow_pickle=False))
    DIR/manifest.json   input signature, k, the item id -> source id table, sha256 and size of both files

    exp = jax.export.deserialize(open("DIR/recommend.jax", "rb").read())
    ids, scores = exp.call(dict(np.load("DIR/params.npz")), history, seen)

The batch dimension and the width of `seen` are symbolic when the model's search allows it; else `seen` is padded
to the longest history (TIGER), else the batch is fixed too (the manifest's inputs give each shape). Items are
ids 1..N as in the run (0 pads `history` and `seen`); `manifest["items"][i]` is item i's id in the source files.
No pickle: arrays in .npz, everything else in JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.files import atomic_write
from genrec.models import protocols

FORMAT = "genrec-export-1"
# The query fields a model's recommend() may read (genrec.data.pipeline.query_examples); history and seen always.
FIELDS = ("history", "seen", "user", "history_times", "target_time")
PLATFORMS = ("cpu", "cuda", "tpu")
NATIVE = {"bool", "float16", "float32", "float64"} | {f"{u}int{n}" for u in ("", "u") for n in (8, 16, 32, 64)}


class _Reads(dict):
  """A batch that records which fields are read."""

  def __init__(self, fields, used):
    super().__init__(fields)
    self.used = used

  def __getitem__(self, key):
    self.used.add(key)
    return super().__getitem__(key)

  def get(self, key, default=None):
    self.used.add(key)
    return super().get(key, default)


def _specs(b, s, max_len: int) -> dict:
  return {
    "history": jax.ShapeDtypeStruct((b, max_len), jnp.int32),
    "seen": jax.ShapeDtypeStruct((b, s), jnp.int32),
    "user": jax.ShapeDtypeStruct((b,), jnp.int32),
    "history_times": jax.ShapeDtypeStruct((b, max_len), jnp.int32),
    "target_time": jax.ShapeDtypeStruct((b,), jnp.int32),
  }


def _host_params(placed) -> tuple[dict[str, np.ndarray], dict[str, str], object]:
  """{name: host array} of params + other (dtypes numpy cannot store in .npy go as float32), {name: dtype to cast
  back to} and the tree structure."""
  state = {"params": placed.params, "other": placed.other}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
  arrays, casts = {}, {}
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    value = np.asarray(jax.device_get(leaf))
    if value.dtype.name not in NATIVE:  # bfloat16 and friends: .npy would store raw bytes
      casts[name] = value.dtype.name
      value = value.astype(np.float32)
    arrays[name] = value
  return arrays, casts, treedef


def export_run(run, out_dir: str | Path, *, k: int = 10, batch_size: int = 64) -> Path:
  """Writes DIR/recommend.jax, DIR/params.npz and DIR/manifest.json for a loaded run (see the module doc)."""
  if not protocols.provides(run.model, protocols.Recommender):
    raise ValueError(
      f"{run.config.model_name} is a pointwise model: it predicts P(like) for a (user, item) "
      "pair and does not rank the catalogue; there is no recommender to export"
    )
  data = run.dataset()
  num_items = data.num_items + len(run.added)
  if k < 1 or k > num_items:
    raise ValueError(f"k must be between 1 and the {num_items} items of the catalogue, got {k}")
  placed = run.placed
  max_len, seen_len = run.config.data.max_len, max(len(s) for s in data.sequences)
  arrays, casts, treedef = _host_params(placed)
  names = list(arrays)
  graphdef, abstract_rngs = placed.eval_graphdef, jax.eval_shape(lambda: placed.rngs)

  used: set[str] = set()
  jax.eval_shape(lambda b: run.model.recommend(_Reads(b, used), k), _specs(2, seen_len, max_len))
  inputs = [f for f in FIELDS if f in ("history", "seen") or f in used]

  def recommend(params, *fields):
    leaves = [params[n].astype(casts[n]) if n in casts else params[n] for n in names]
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    rngs = jax.tree.map(_fresh_rng, abstract_rngs)  # eval mode draws no randomness
    model = nnx.merge(graphdef, state["params"], rngs, state["other"])
    ids, scores = model.recommend(dict(zip(inputs, fields)), k)
    return ids.astype(jnp.int32), scores.astype(jnp.float32)

  param_specs = {n: jax.ShapeDtypeStruct(a.shape, a.dtype) for n, a in arrays.items()}
  b, s = jax.export.symbolic_shape("b, s")
  # Most symbolic first: any batch and seen width; any batch, seen padded to the longest history; all fixed.
  failures = []
  for shape in ((b, s), (b, seen_len), (batch_size, seen_len)):
    specs = _specs(*shape, max_len)
    try:
      exported = _export(recommend, param_specs, [specs[f] for f in inputs])
      break
    except Exception as e:  # noqa: BLE001  a search whose shapes must be static: try the next, more fixed
      if shape[0] == batch_size:
        raise
      failures.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  blob = bytes(exported.serialize())
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  files = {"recommend.jax": blob, "params.npz": buffer.getvalue()}
  for name, content in files.items():
    atomic_write(out / name, content)
  symbolic = not isinstance(specs["history"].shape[0], int)
  manifest = {
    "format": FORMAT,
    "model": run.config.model_name,
    "preset": run.config.preset,
    "run": str(run.workdir),
    "step": run.step,
    "k": k,
    "call": "jax.export.deserialize(recommend.jax bytes).call(params, " + ", ".join(inputs) + ") -> (ids, scores)",
    "batch": "symbolic" if symbolic else batch_size,
    "inputs": [{"name": f, "dtype": "int32", "shape": [_dim(d) for d in specs[f].shape]} for f in inputs],
    "outputs": [
      {"name": "ids", "dtype": "int32", "shape": [_dim(specs["history"].shape[0]), k]},
      {"name": "scores", "dtype": "float32", "shape": [_dim(specs["history"].shape[0]), k]},
    ],
    "padding_id": 0,
    "platforms": list(exported.platforms),
    "jax_version": jax.__version__,
    "params": {  # model_dtype: what the exported function casts a stored float32 array back to (bfloat16)
      n: {"shape": list(a.shape), "dtype": a.dtype.name, **({"model_dtype": casts[n]} if n in casts else {})}
      for n, a in arrays.items()
    },
    "files": {n: {"sha256": hashlib.sha256(c).hexdigest(), "bytes": len(c)} for n, c in files.items()},
    "items": data.item_raw + [a["item"] for a in run.added],
  }
  if "user" in inputs:  # the user input is the run's user index: users[i] is user i's source id
    manifest["users"] = data.user_raw
  if failures:
    manifest["symbolic_export_failed"] = failures
  atomic_write(out / "manifest.json", json.dumps(manifest, indent=1))  # last: the folder is complete
  return out


def _dim(d):
  return d if isinstance(d, int) else str(d)  # a symbolic dimension by its name


def _export(fn, param_specs, field_specs):
  """Exported for every platform that lowers it (cpu, cuda, tpu), else for the default backend."""
  jitted = jax.jit(fn)
  try:
    return jax.export.export(jitted, platforms=PLATFORMS)(param_specs, *field_specs)
  except Exception:  # noqa: BLE001  an op without a lowering on some platform
    return jax.export.export(jitted)(param_specs, *field_specs)


def _fresh_rng(a):
  if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
    return jax.random.split(jax.random.key(0), a.shape) if a.shape else jax.random.key(0)
  return jnp.zeros(a.shape, a.dtype)
