"""Per-device memory of a compiled train step, from abstract shapes: nothing is allocated, so a 10M-item table
can be sized on a laptop before it meets an accelerator (`compiled.memory_analysis()`, as maxtext prints).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import DataConfig, ExperimentConfig
from genrec.data import load_dataset
from genrec.train import optim, sharding
from genrec.train.state import abstract_with, opt_shardings, place
from genrec.train.tasks import get_task
from genrec.train.trainer import make_train_step


def _probe(cfg: ExperimentConfig, mesh):
  """(cfg with its sizes resolved, shapes and dtypes of one global train batch). Item ids do not matter for
  shapes, so the batch comes from a small synthetic dataset when the model's item count is fixed in its config."""
  data_cfg = cfg.data
  if getattr(cfg.model, "num_items", 0):
    data_cfg = DataConfig(dataset="synthetic", max_len=cfg.data.max_len, train_window=cfg.data.train_window)
  task = get_task(dataclasses.replace(cfg, data=data_cfg), load_dataset(data_cfg))
  resolved = dataclasses.replace(task.configure(), data=cfg.data)
  local = task.train_dataset(process_index=0, process_count=1)[0]
  bsh = sharding.batch_sharding(mesh)
  return resolved, {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bsh) for k, v in local.items()}


def train_step_memory(cfg: ExperimentConfig, mesh) -> dict[str, int]:
  """Bytes per device of the jitted train step for `cfg` (model sizes resolved) on `mesh`: its arguments
  (parameters, optimizer state, batch), outputs, temporaries, and `peak` = arguments + outputs - donated
  aliases + temporaries."""
  cfg, batch = _probe(cfg, mesh)
  placed = place(cfg, mesh, init=False)
  tx = optim.optimizer(cfg.trainer)
  opt_sh = opt_shardings(tx, placed.params, placed.param_shardings, mesh)
  rep = sharding.replicated(mesh)
  state_sh = {"params": placed.param_shardings, "other": placed.other_shardings, "opt": opt_sh, "step": rep}
  state = {
    "params": placed.params,
    "other": placed.other,
    "opt": abstract_with(jax.eval_shape(tx.init, placed.params), opt_sh),
    "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
  }
  rngs_sh = jax.tree.map(lambda _: rep, placed.rngs)
  step = jax.jit(
    make_train_step(placed, tx, cfg),
    in_shardings=(state_sh, rngs_sh, sharding.batch_sharding(mesh)),
    out_shardings=(state_sh, rep),
    donate_argnums=0,
  )
  with jax.set_mesh(mesh):
    compiled = step.lower(state, placed.rngs, batch).compile()
  m = compiled.memory_analysis()
  out = {
    "arguments": m.argument_size_in_bytes,
    "outputs": m.output_size_in_bytes,
    "aliased": m.alias_size_in_bytes,
    "temporaries": m.temp_size_in_bytes,
  }
  out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  out["parameters"] = sum(_local_bytes(v) for v in jax.tree.leaves(nnx.State(placed.params)))
  return out


def _local_bytes(x) -> int:
  """Bytes of one device's shard of abstract array x."""
  shape = x.sharding.shard_shape(x.shape)
  n = 1
  for d in shape:
    n *= d
  return n * jnp.dtype(x.dtype).itemsize
