"""Run logs: JSONL metrics, TensorBoard event files and a progress bar. Only process 0 writes.

metrics.jsonl holds one row per logged (step, split). A run that starts at `initial_step` (a resumption from
that checkpoint, 0 for a fresh run) first drops the rows of later steps: a killed run's steps past its last
checkpoint are computed again and logged once.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax

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

      self._tb = SummaryWriter(str(workdir / "tensorboard"))
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
