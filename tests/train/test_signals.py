"""Stopping a run with SIGTERM or SIGINT: the step finishes, a checkpoint is written, the process exits 0,
and the same command resumes from it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import genrec


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_exits_cleanly(tmp_path, sig):
  workdir = tmp_path / "run"
  cmd = [
    sys.executable,
    "-m",
    "genrec.cli",
    "train",
    "sasrec:tiny",
    "--workdir",
    str(workdir),
    "--set",
    "trainer.steps=100000",
    "trainer.eval_every=100000",
    "trainer.checkpoint_every=100000",
    "trainer.log_every=1",
    "trainer.progress=false",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.2)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert f"{sig.name}: stopped after step" in err and "resumes from it" in err
  logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
  run = genrec.load(workdir, which="latest")
  assert run.step >= max(logged) >= 3  # the checkpoint holds every step that was logged
  assert not (workdir / "results.json").exists()  # no final evaluation on an interrupted run
