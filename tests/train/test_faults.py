"""kill -9 at any moment loses nothing, and damaged checkpoints are named and skipped.

A training subprocess is killed with SIGKILL twice — once while a checkpoint is being written (orbax's
temporary folder exists), once at a random moment — and restarted with the same command each time; its
final parameters equal those of an uninterrupted run bit for bit.
"""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import genrec
from fixtures_runs import copy_run, genrec_cli, sasrec_run

SETTINGS = (
  "trainer.steps=14",
  "trainer.eval_every=7",
  "trainer.checkpoint_every=1",
  "trainer.log_every=1",
  "trainer.progress=false",
)


def _command(workdir):
  return [
    sys.executable,
    "-m",
    "genrec.cli",
    "train",
    "sasrec:tiny",
    "--workdir",
    str(workdir),
    "--local-devices",
    "8",
    "--set",
    *SETTINGS,
  ]


def _steps(workdir) -> list[int]:
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _saving(workdir) -> bool:
  folder = workdir / "checkpoints"
  return folder.is_dir() and any("tmp" in p.name for p in folder.iterdir())


def _run_until(workdir, ready, timeout=240.0) -> int | None:
  """Starts training; SIGKILLs it as soon as ready(workdir) holds. Returns the exit code if it ended first."""
  env = {**os.environ, "TQDM_DISABLE": "1", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(_command(workdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + timeout
  try:
    while proc.poll() is None and time.time() < deadline:
      if ready(workdir):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
      time.sleep(0.002)
    if proc.poll() is None:
      raise TimeoutError("training subprocess did not finish")
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    return proc.returncode
  finally:
    if proc.poll() is None:
      proc.kill()


def _params(workdir, which="latest"):
  return [np.asarray(x) for x in jax.tree.leaves(genrec.load(workdir, which=which).placed.params)]


def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path):
  ref = tmp_path / "ref"
  code, _, err = genrec_cli("train", "sasrec:tiny", "--workdir", ref, "--local-devices", "8", "--set", *SETTINGS)
  assert code == 0, err

  run = tmp_path / "killed"
  assert _run_until(run, lambda w: max(_steps(w), default=0) >= 3 and _saving(w)) is None  # mid-save
  killed_at = _steps(run)
  delay = random.Random(0).uniform(0.0, 0.5)
  start = {}

  def later(w):  # at a random moment once the resumed run has trained past its first new checkpoint
    if max(_steps(w), default=0) > max(killed_at):
      start.setdefault("t", time.time())
      return time.time() - start["t"] >= delay
    return False

  assert _run_until(run, later) is None
  assert _run_until(run, lambda w: False) == 0
  assert max(_steps(run)) == 14
  for a, b in zip(_params(ref), _params(run)):
    np.testing.assert_array_equal(b, a)


def _state_file(step_dir):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.stat().st_size > 64]
  return max(files, key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_named_and_skipped(tmp_path_factory, tmp_path, damage):
  run = copy_run(sasrec_run(tmp_path_factory), tmp_path / "run")
  steps = _steps(run)
  assert len(steps) >= 2
  victim = _state_file(run / "checkpoints" / str(steps[-1]))
  data = victim.read_bytes()
  if damage == "truncate":
    victim.write_bytes(data[: len(data) // 2])
  else:
    victim.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])

  with pytest.raises(genrec.train.checkpoint.CheckpointError) as e:
    genrec.load(run, which="latest")
  assert f"step {steps[-1]}" in str(e.value) and victim.name in str(e.value)
  assert ("truncated" if damage == "truncate" else "modified") in str(e.value)

  # The same `genrec train` resumes from the step before, says so, and finishes.
  code, out, err = genrec_cli("train", "sasrec:tiny", "--workdir", run, "--set", "trainer.progress=false")
  assert code == 0, err
  assert f"skipping a damaged checkpoint: checkpoint step {steps[-1]}" in err
  assert f"resuming from step {steps[-2]}" in err
  assert genrec.load(run, which="latest").step == steps[-1]  # rewritten, readable again
