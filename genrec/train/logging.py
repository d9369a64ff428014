"""Run logs: JSONL metrics, TensorBoard event files and a progress bar. Only process 0 writes.

metrics.jsonl holds one row per logged (step, split). A run that starts at `initial_step` (a resumption from
that checkpoint, 0 for a fresh run) first drops the rows of later steps: a killed run's steps past its last
checkpoint are computed again and logged once. The TensorBoard events of those steps are purged the way
TensorBoard reads them (`purge_step`: a restart marker at initial_step + 1 hides every earlier-written event from
that step on), so each curve shows each step once. At the end of a run `log_results` writes the hyperparameters,
the config (as text) and the valid/test metrics to DIR/tensorboard/results (rewritten by a later finish), and
`genrec eval` the metrics it recomputed to DIR/tensorboard/eval (rewritten by a later eval).

In a gs:// run folder metrics.jsonl cannot be appended to (an object is written whole), so the logger keeps
its rows and rewrites the object on `flush()`, which the trainer calls before every checkpoint: a run killed
after a checkpoint still has every row up to it, and the ones after are computed and logged again on resume.
Its TensorBoard events are written to a local temporary folder and copied up on flush() and close()
(tensorboardX's own gs:// writer uploads again whenever it is garbage-collected, retrying for minutes when the
network is gone).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax

from genrec import config as config_lib
from genrec.files import atomic_write, copy_up, is_remote, remove


class RunLogger:
  def __init__(self, workdir: Path, *, total_steps: int, initial_step: int, progress: bool):
    self.enabled = jax.process_index() == 0
    self._bar = None
    self._tb = None
    self._jsonl = None
    self._rows = None  # a remote metrics.jsonl: its text, rewritten whole on flush()
    self._events = None  # a remote run's local TensorBoard folder, copied up on flush()
    if not self.enabled:
      return
    workdir.mkdir(parents=True, exist_ok=True)
    self._path = workdir / "metrics.jsonl"
    _drop_rows_after(self._path, initial_step)
    if is_remote(workdir):
      self._rows = [self._path.read_text()] if self._path.exists() else []
      self._written = len(self._rows)
    else:
      self._jsonl = open(self._path, "a")
    try:
      from tensorboardX import SummaryWriter

      if is_remote(workdir):
        self._events = tempfile.mkdtemp(prefix="genrec-tensorboard-")
      self._tb = SummaryWriter(
        self._events or str(workdir / "tensorboard"),
        purge_step=initial_step + 1 if initial_step else None,
        filename_suffix=_unique_suffix(),
      )
    except ImportError:
      self._tb = None
    if progress:
      from tqdm import tqdm

      self._bar = tqdm(
        total=total_steps, initial=initial_step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr
      )

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    flat = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
    row = json.dumps({"step": step, "split": split, "time": time.time(), **flat}) + "\n"
    if self._rows is not None:
      self._rows.append(row)
    else:
      self._jsonl.write(row)
      self._jsonl.flush()
    if self._tb is not None:
      for k, v in flat.items():
        self._tb.add_scalar(f"{split}/{k}", v, step)

  def flush(self) -> None:
    """Makes every row written so far durable (a local file already is: each row is flushed as written)."""
    if self.enabled and self._rows is not None and len(self._rows) > self._written:
      atomic_write(self._path, "".join(self._rows))
      self._written = len(self._rows)
    if self._events is not None and self._tb is not None:
      self._tb.flush()
      copy_up(self._events, self._path.parent / "tensorboard")

  def advance(self, n: int, postfix: dict | None = None) -> None:
    if self._bar is not None:
      self._bar.update(n)
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

  def message(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text, file=sys.stderr)
    else:
      print(text, file=sys.stderr, flush=True)

  def close(self) -> None:
    self.flush()
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._events is not None:
      copy_up(self._events, self._path.parent / "tensorboard")
      shutil.rmtree(self._events, ignore_errors=True)
    if self._jsonl is not None:
      self._jsonl.close()


def _drop_rows_after(path: Path, step: int) -> None:
  """Rewrites metrics.jsonl (atomically) without the rows logged after `step` and without torn lines."""
  if not path.exists():
    return
  keep, changed = [], False
  for line in path.read_text().splitlines():
    try:
      row_step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
      row_step = None  # a line torn by a kill mid-write
    if row_step is not None and row_step <= step:
      keep.append(line)
    else:
      changed = True
  if changed:
    atomic_write(path, "".join(line + "\n" for line in keep))


def _unique_suffix() -> str:
  """tensorboardX names event files by the second and opens them with 'wb': a writer started in the same second
  as the one before it would truncate that one's file. Nanoseconds keep names apart, in the order written."""
  return f".{time.time_ns()}.{os.getpid()}"


def log_results(workdir: Path, config: dict, results: dict, *, name: str = "results", step: int | None = None) -> None:
  """The end of a run in TensorBoard, in DIR/tensorboard/NAME: the config (JSON text), its settings as
  hyperparameters and the valid/test metrics (scalars at `step`, default the last step; the hparams table's
  metrics). NAME "results" is the trainer's finish, "eval" the last `genrec eval` (its eval.* settings in the
  config)."""
  if jax.process_index() != 0:
    return
  try:
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams
  except ImportError:
    return
  folder = workdir / "tensorboard" / name
  remove(folder)  # one copy, whichever finish (or eval) wrote it last
  step = int(results.get("steps") or 0) if step is None else step
  metrics = {  # tags as tensorboardX writes scalars ("ndcg@10" -> "ndcg_10"), so the hparams table finds them
    re.sub(r"[^-/\w.]", "_", f"{split}/{k}"): float(v)
    for split in ("valid", "test")
    for k, v in (results.get(split) or {}).items()
    if isinstance(v, (int, float)) and math.isfinite(float(v))
  }
  settings = {k: _hparam(v) for k, v in config_lib.flat(config).items() if v is not None}
  local = tempfile.mkdtemp(prefix="genrec-tensorboard-") if is_remote(folder) else None  # as RunLogger's
  writer = SummaryWriter(local or str(folder), filename_suffix=_unique_suffix())
  try:
    writer.add_text("config", "\n".join("    " + line for line in json.dumps(config, indent=2).splitlines()), step)
    for summary in hparams(settings, metrics):
      writer.file_writer.add_summary(summary)
    for tag, value in metrics.items():
      writer.add_scalar(tag, value, step)
  finally:
    writer.close()
    if local is not None:
      copy_up(local, folder)
      shutil.rmtree(local, ignore_errors=True)


def _hparam(value):
  return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
