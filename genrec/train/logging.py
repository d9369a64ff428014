"""Run logs: JSONL metrics, TensorBoard event files and a progress bar. Only process 0 writes.

metrics.jsonl holds one row per logged (step, split). A run that starts at `initial_step` (a resumption from
that checkpoint, 0 for a fresh run) first drops the rows of later steps: a killed run's steps past its last
checkpoint are computed again and logged once. The TensorBoard events of those steps are purged the way
TensorBoard reads them (`purge_step`: a restart marker at initial_step + 1 hides every earlier-written event from
that step on), so each curve shows each step once. At the end of a run `log_results` writes the hyperparameters,
the config (as text) and the valid/test metrics to DIR/tensorboard/results (rewritten by a later finish), and
`genrec eval` the metrics it recomputed to DIR/tensorboard/eval (rewritten by a later eval).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

import jax

from genrec import config as config_lib
from genrec.files import atomic_write


class RunLogger:
  def __init__(self, workdir: Path, *, total_steps: int, initial_step: int, progress: bool):
    self.enabled = jax.process_index() == 0
    self._bar = None
    self._tb = None
    self._jsonl = None
    if not self.enabled:
      return
    workdir.mkdir(parents=True, exist_ok=True)
    _drop_rows_after(workdir / "metrics.jsonl", initial_step)
    self._jsonl = open(workdir / "metrics.jsonl", "a")
    try:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(
        str(workdir / "tensorboard"),
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
    self._jsonl.write(json.dumps({"step": step, "split": split, "time": time.time(), **flat}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in flat.items():
        self._tb.add_scalar(f"{split}/{k}", v, step)

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
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
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
  shutil.rmtree(folder, ignore_errors=True)  # one copy, whichever finish (or eval) wrote it last
  step = int(results.get("steps") or 0) if step is None else step
  metrics = {  # tags as tensorboardX writes scalars ("ndcg@10" -> "ndcg_10"), so the hparams table finds them
    re.sub(r"[^-/\w.]", "_", f"{split}/{k}"): float(v)
    for split in ("valid", "test")
    for k, v in (results.get(split) or {}).items()
    if isinstance(v, (int, float)) and math.isfinite(float(v))
  }
  settings = {k: _hparam(v) for k, v in config_lib.flat(config).items() if v is not None}
  writer = SummaryWriter(str(folder), filename_suffix=_unique_suffix())
  try:
    writer.add_text("config", "\n".join("    " + line for line in json.dumps(config, indent=2).splitlines()), step)
    for summary in hparams(settings, metrics):
      writer.file_writer.add_summary(summary)
    for tag, value in metrics.items():
      writer.add_scalar(tag, value, step)
  finally:
    writer.close()


def _hparam(value):
  return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
