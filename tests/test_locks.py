"""One writer per run or stage folder (genrec.locks), checked with real concurrent processes: a second trainer
waits and says for whom, --fresh never deletes a live run, a dead holder's lock is taken over, runs started
together build a stage once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import genrec.configs
from genrec import locks, pipeline
from genrec.errors import ConfigError, LockedError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}

HOLDER = """
import sys, time
from pathlib import Path
from genrec import locks
folder, what = sys.argv[1], sys.argv[2]
locks.acquire(folder, what)
print("held", flush=True)
release = Path(folder + ".release")
while not release.exists():
  time.sleep(0.05)
if len(sys.argv) > 3:
  Path(folder, "results.json").write_text("{}")
locks.release(folder)
print("released", flush=True)
"""


def start_holder(folder: Path, what: str, *extra) -> subprocess.Popen:
  """A process holding FOLDER's lock until FOLDER.release exists (then, with extra args, it 'finishes' the
  folder with a results.json before releasing)."""
  proc = subprocess.Popen(
    [sys.executable, "-c", HOLDER, str(folder), what, *extra], stdout=subprocess.PIPE, text=True, env=ENV
  )
  assert proc.stdout.readline().strip() == "held"
  return proc


def wait_for_line(stream, needle: str, timeout: float = 120) -> str:
  deadline = time.time() + timeout
  seen = []
  while time.time() < deadline:
    line = stream.readline()
    if not line:
      break
    seen.append(line)
    if needle in line:
      return line
  raise AssertionError(f"{needle!r} not in {''.join(seen)!r}")


def test_a_second_trainer_waits_for_the_first_and_names_it(tmp_path):
  workdir = tmp_path / "run"
  holder = start_holder(workdir, "genrec train first:run")
  second = subprocess.Popen(
    [sys.executable, "-m", "genrec.cli", "train", "sasrec:tiny", "--workdir", str(workdir), "--set"]
    + ["trainer.steps=2", "trainer.eval_every=2", "trainer.checkpoint_every=2", "trainer.progress=false"],
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
    env=ENV,
  )
  line = wait_for_line(second.stderr, "waiting for")
  assert f"pid {holder.pid}" in line and "genrec train first:run" in line
  assert second.poll() is None and not (workdir / "checkpoints").exists()  # it waits; nothing written yet
  Path(f"{workdir}.release").touch()
  assert holder.wait(30) == 0
  rest = second.stderr.read()
  assert second.wait(180) == 0, rest
  assert (workdir / "results.json").is_file()


def test_fresh_refuses_a_live_run_and_deletes_nothing(tmp_path):
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
  holder = start_holder(workdir, "genrec train live:run")
  try:
    proc = subprocess.run(
      [sys.executable, "-m", "genrec.cli", "train", "sasrec:tiny", "--workdir", str(workdir), "--fresh"],
      capture_output=True,
      text=True,
      env=ENV,
      timeout=120,
    )
  finally:
    Path(f"{workdir}.release").touch()
    holder.wait(30)
  assert proc.returncode == 2, proc.stderr
  assert f"pid {holder.pid}" in proc.stderr and "in use" in proc.stderr and "Traceback" not in proc.stderr
  assert (workdir / "checkpoints").is_dir() and (workdir / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
  folder = tmp_path / "stage"
  holder = start_holder(folder, "stage rqkmeans:ml100k")
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait(30)
  with locks.hold(folder, "test", wait=False):  # the kernel dropped the dead process's flock
    assert locks.held(folder)
  err = capsys.readouterr().err
  assert f"pid {holder.pid}" in err and "died" in err and "stage rqkmeans:ml100k" in err
  assert not locks.held(folder)


def test_without_wait_a_held_folder_is_a_locked_error_naming_the_holder(tmp_path):
  folder = tmp_path / "run"
  holder = start_holder(folder, "genrec train other:run")
  try:
    with pytest.raises(LockedError, match=f"pid {holder.pid}.*genrec train other:run"):
      locks.acquire(folder, "test", wait=False)
  finally:
    Path(f"{folder}.release").touch()
    holder.wait(30)
  with locks.hold(folder, wait=False):  # released cleanly: free again, and no takeover message
    pass


def test_the_lock_is_reentrant_in_one_process_and_a_file_is_refused(tmp_path):
  folder = tmp_path / "run"
  with locks.hold(folder):
    with locks.hold(folder, wait=False):  # a pipeline holding a stage folder starts that stage's trainer
      assert locks.held(folder)
    assert locks.held(folder)
  assert not locks.held(folder)
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match="is a file, not a folder"):
    locks.acquire(tmp_path / "file")


def test_runs_started_together_build_a_stage_once(tmp_path, monkeypatch):
  """While another process builds the stage, build_stage waits; when that one finishes, it reuses the stage."""
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
  cfg = genrec.configs.get("rqkmeans:tiny")
  folder = pipeline.stage_dir(cfg)
  holder = start_holder(folder, "stage rqkmeans:tiny", "finish")

  def must_not_train(*args, **kwargs):
    raise AssertionError("a stage being built by another process was built again")

  monkeypatch.setattr(pipeline, "Trainer", must_not_train)
  release = Path(f"{folder}.release")
  code = f"import time, pathlib; time.sleep(1); pathlib.Path({str(release)!r}).touch()"
  timer = subprocess.Popen([sys.executable, "-c", code])
  assert pipeline.build_stage(cfg) == folder  # waited for the holder, then found its results
  assert holder.wait(30) == 0 and timer.wait(30) == 0
  assert (folder / "results.json").is_file()
