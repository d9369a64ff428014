"""Checkpoints: the only module that imports orbax.

A checkpoint is a step folder with two items: `state` (arrays: parameters, optimizer state) and `meta`
(JSON: the experiment config, the model's registry key, the data-iterator state, metrics). Orbax writes a
step into a temporary folder and renames it when complete, so a run killed mid-save leaves the previous
step loadable.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A folder is not a run, or a checkpoint in it cannot be read."""


class Checkpointer:
  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 2, read_only: bool = False):
    self.directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Writes step `step`, replacing an earlier save of the same step (a run resumed from before it
    redoes that step, e.g. after being killed while writing a later checkpoint)."""
    if step in self.steps():
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def read_meta(self, step: int | None = None) -> dict:
    step = self._resolve(step)
    path = self.directory / str(step) / "meta" / "metadata"
    try:
      return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise CheckpointError(f"checkpoint step {step} in {self.directory}: cannot read {path}: {e}") from None

  def restore(self, step: int | None, abstract_state):
    """Restores arrays onto the shardings carried by `abstract_state` (ShapeDtypeStructs), any mesh."""
    step = self._resolve(step)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      raise CheckpointError(
          f"checkpoint step {step} in {self.directory} is damaged or incomplete "
          f"({type(e).__name__}: {str(e).splitlines()[0][:300]})") from e
    return out["state"]

  def _resolve(self, step):
    if step is None:
      step = self.latest_step()
    if step is None or step not in self.steps():
      raise CheckpointError(f"no checkpoint{'' if step is None else f' at step {step}'} in {self.directory}")
    return step

  def close(self):
    self._manager.close()
