"""A run folder back as a placed model: its config (from the checkpoint's metadata), its parameters restored onto
any mesh. The engine's half of `genrec.load` (which adds the added-items overlay and the user-facing `Run`);
warm starts and the family tools that read other runs (tokenizers, encoders) use it directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from genrec import config as config_lib
from genrec import hub, registry
from genrec.config import ExperimentConfig, MeshConfig
from genrec.errors import CheckpointError
from genrec.files import inside
from genrec.train import optim, sharding
from genrec.train.checkpoint import Checkpointer
from genrec.train.state import PlacedModel, abstract_with, opt_shardings, place


@dataclasses.dataclass
class Restored:
  """A run's config, checkpoint `meta` and parameters (`placed`, eval mode through `model`)."""

  workdir: Path
  config: ExperimentConfig
  meta: dict
  placed: PlacedModel

  @property
  def model(self):
    return self.placed.model()

  @property
  def step(self) -> int:
    return self.meta["step"]


def is_run(workdir: Path) -> bool:
  return (workdir / "best").is_dir() or (workdir / "checkpoints").is_dir()


def restore(
  workdir: str | Path, *, which: str = "best", step: int | None = None, mesh=None, allow_unverified: bool = False
) -> Restored:
  """which: "best" (the kept model by validation metric) or "latest" (the last training checkpoint). mesh: where
  to place the parameters (default: every local device on the data axis, parameters sharded by the run's own
  rules — any mesh works, the checkpoint is resharded on restore). workdir may be a URI (https://, hf://,
  gs://): the published run is fetched and checked first (genrec.hub). allow_unverified: restore a checkpoint
  that has no manifest (its files cannot be checked); refused by default."""
  workdir = hub.local(workdir)
  if not workdir.is_dir():
    raise CheckpointError(f"{workdir} does not exist")
  if not is_run(workdir):
    raise CheckpointError(
      f"{workdir} is not a genrec run: no 'best/' or 'checkpoints/' folder in it "
      "(train one with `genrec train MODEL:PRESET --workdir DIR`)"
    )
  if which not in ("best", "latest"):
    raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
  folder = workdir / ("best" if which == "best" else "checkpoints")
  if which == "best" and not folder.is_dir():
    folder = workdir / "checkpoints"
  inside(workdir, folder.name, "checkpoint folder")  # a checkpoints/ linked to another run is not this run
  ckpt = Checkpointer(folder, max_to_keep=None, read_only=True, allow_unverified=allow_unverified)
  meta = ckpt.read_meta(step)
  if "config" not in meta or "model_name" not in meta:
    raise CheckpointError(f"{folder}: checkpoint metadata has no config; not written by genrec train")
  try:
    cfg = config_lib.from_dict(ExperimentConfig, meta["config"])
  except registry.UnknownModelError as e:
    raise registry.UnknownModelError(
      f"{workdir} holds a run of model {meta['model_name']!r}, which is not registered in this process: {e}"
    ) from None
  mesh = mesh if mesh is not None else sharding.make_mesh(dataclasses.replace(MeshConfig(), rules=cfg.mesh.rules))
  placed = place(cfg, mesh, init=False)
  target = {"params": placed.params, "other": placed.other}
  if folder.name == "checkpoints":
    target = _full_target(placed)
  state = ckpt.restore(meta["step"], target)
  placed.params, placed.other = state["params"], state["other"]
  return Restored(workdir, cfg, meta, placed)


def _full_target(placed: PlacedModel):
  """The trainer's full saved state (with optimizer) as a restore target."""
  tx = optim.optimizer(placed.cfg.trainer)
  opt_sh = opt_shardings(tx, placed.params, placed.param_shardings, placed.mesh)
  abstract_opt = jax.eval_shape(tx.init, placed.params)
  rep = sharding.replicated(placed.mesh)
  return {
    "params": placed.params,
    "other": placed.other,
    "opt": abstract_with(abstract_opt, opt_sh),
    "step": jax.ShapeDtypeStruct((), np.int32, sharding=rep),
  }
