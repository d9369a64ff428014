"""Checkpoints: the only module that imports orbax.

A checkpoint is a step folder with two items: `state` (arrays: parameters, optimizer state) and `meta`
(JSON: the experiment config, the model's registry key, the data-iterator state, metrics). Orbax writes a
step into a temporary folder and renames it when complete, so a run killed mid-save leaves the previous
step loadable. After that, process 0 adds `genrec-manifest.json` (size and sha256 of every file), and every
restore checks it: a truncated or altered file is an error naming the step and the file, not a tensorstore
message or silently wrong weights. A step without a manifest (killed between the rename and the manifest, or
copied without it) is refused unless the caller allows unverified restores; links out of the step folder
(a `state` linked to another run) and manifest entries naming files outside it are refused unread, and a
restored state must be finite.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from genrec import files
from genrec.errors import CheckpointError
from genrec.files import as_path, atomic_write, is_remote, outside, sha256, tree

MANIFEST = "genrec-manifest.json"


def _files(folder: Path) -> dict[str, Path]:
  return {str(p.relative_to(folder)): p for p in tree(folder) if p.name != MANIFEST}


def write_manifest(folder: Path) -> None:
  entries = {rel: [files.size(p), sha256(p)] for rel, p in _files(folder).items()}
  atomic_write(folder / MANIFEST, json.dumps({"format": 1, "files": entries}, indent=1, sort_keys=True))


def _contained(folder: Path, step: int) -> None:
  """Every entry of the step folder (the folder itself, `state`, `meta`, their files) must resolve inside the
  checkpoint directory's step folder: a link to another run or to a system file is refused, unread. (An object
  store has no links.)"""
  if is_remote(folder):
    return
  root = folder.resolve()
  if not root.is_relative_to(folder.parent.resolve()) or root.name != folder.name:
    raise CheckpointError(f"checkpoint step {step}: {folder} is a link out of {folder.parent}; refusing to read it")
  for dirpath, dirnames, filenames in os.walk(folder):
    for name in dirnames + filenames:
      entry = Path(dirpath) / name
      if entry.is_symlink() and not entry.resolve().is_relative_to(root):
        raise CheckpointError(
          f"checkpoint step {step}: {entry} is a link out of the checkpoint folder {folder}; refusing to read it"
        )


def verify_manifest(folder: Path, step: int, *, allow_unverified: bool = False) -> bool:
  """Raises CheckpointError naming the first missing, truncated or altered file, a manifest entry or link that
  leads out of the step folder, or (unless `allow_unverified`) a missing manifest; False if unverified."""
  _contained(folder, step)
  path = folder / MANIFEST
  if not path.is_file():
    if allow_unverified:
      return False
    raise CheckpointError(
      f"checkpoint step {step} in {folder.parent} has no manifest {MANIFEST}, so its files cannot be checked "
      "(a run killed right after writing it, or files copied without it); genrec train resumes from the step "
      "before, or load it unverified: --allow-unverified (genrec.load(..., allow_unverified=True))"
    )
  try:
    entries = json.loads(path.read_text())["files"]
    items = [(str(rel), int(size), str(digest)) for rel, (size, digest) in entries.items()]
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f"checkpoint step {step}: its manifest {path} is unreadable ({e})") from None
  for rel, _, _ in items:  # all checked before any file is read: nothing about a file outside is ever told
    if outside(folder, rel):
      raise CheckpointError(
        f"checkpoint step {step}: its manifest {path} names {rel!r}, which is outside the checkpoint folder; "
        "refusing to read it (the manifest was edited)"
      )
  for rel, size, digest in items:
    file = folder / rel
    if not file.is_file():
      raise CheckpointError(f"checkpoint step {step}: file {file} is missing")
    actual = files.size(file)
    if actual != size:
      raise CheckpointError(
        f"checkpoint step {step}: file {file} is truncated or grown ({actual} bytes, {size} when written)"
      )
    if sha256(file) != digest:
      raise CheckpointError(
        f"checkpoint step {step}: file {file} was modified after it was written (sha256 differs from the manifest)"
      )
  return True


def check_finite(state, step: int, directory: Path) -> None:
  """Every floating array of a restored state must be finite: NaN/Inf parameters are refused, not evaluated."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    dtype = getattr(leaf, "dtype", None)
    if (
      dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.inexact) and not bool(jax.numpy.isfinite(leaf).all())
    ):
      raise CheckpointError(
        f"checkpoint step {step} in {directory}: {jax.tree_util.keystr(path)} holds NaN or Inf values; the "
        "checkpoint is damaged, or training diverged before it was written"
      )


def _leftover_read(report) -> bool:
  exc, obj = report.exc_value, report.object
  closed = isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)
  code = getattr(obj, "cr_code", None)
  return closed or (code is not None and ("orbax" in code.co_filename or "tensorstore" in code.co_filename))


def _quiet_leftover_reads() -> None:
  """After a failed restore, tensorstore reads still in flight call back into the event loop orbax has closed,
  and Python reports each through sys.unraisablehook while and after the error is raised ("Exception ignored in ...",
  "Event loop is closed"). Only those reports are dropped: the CheckpointError is the whole story."""
  previous = sys.unraisablehook
  if getattr(previous, "genrec_quiet", False):
    return

  def hook(report):
    if not _leftover_read(report):
      previous(report)

  hook.genrec_quiet = True
  sys.unraisablehook = hook


class Checkpointer:
  def __init__(
    self,
    directory: str | os.PathLike,
    *,
    max_to_keep: int | None = 2,
    read_only: bool = False,
    allow_unverified: bool = False,
  ):
    self.directory = as_path(directory) if is_remote(directory) else Path(directory).absolute()
    self.allow_unverified = allow_unverified
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, enable_async_checkpointing=False
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
    self._verified: set[int] = set()

  def steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Writes step `step`, replacing an earlier save of the same step (a run resumed from before it
    redoes that step, e.g. after being killed while writing a later checkpoint)."""
    if step in self.steps():
      self._manager.delete(step)
    self._verified.discard(step)
    self._manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      write_manifest(self.directory / str(step))

  def verify(self, step: int) -> None:
    """Checks the step's files against its manifest (once per step and Checkpointer)."""
    if step not in self._verified:
      verify_manifest(self.directory / str(step), step, allow_unverified=self.allow_unverified)
      self._verified.add(step)

  def read_meta(self, step: int | None = None) -> dict:
    step = self._resolve(step)
    self.verify(step)
    path = self.directory / str(step) / "meta" / "metadata"
    try:
      return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise CheckpointError(f"checkpoint step {step} in {self.directory}: cannot read {path}: {e}") from None

  def restore(self, step: int | None, abstract_state):
    """Restores arrays onto the shardings carried by `abstract_state` (ShapeDtypeStructs), any mesh."""
    step = self._resolve(step)
    self.verify(step)
    _quiet_leftover_reads()  # before: the reports can come while orbax is still raising
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      raise CheckpointError(
        f"checkpoint step {step} in {self.directory} is damaged or incomplete "
        f"({type(e).__name__}: {str(e).splitlines()[0][:300]})"
      ) from e
    check_finite(out["state"], step, self.directory)
    return out["state"]

  def _resolve(self, step):
    if step is None:
      step = self.latest_step()
    if step is None or step not in self.steps():
      raise CheckpointError(f"no checkpoint{'' if step is None else f' at step {step}'} in {self.directory}")
    return step

  def close(self):
    self._manager.close()
