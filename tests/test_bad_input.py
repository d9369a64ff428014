"""Bad input at every boundary gives a clear error (exit code 2 from the CLI), never a traceback; damaged or
half-written run folders are diagnosed, and an interrupted checkpoint never hides the previous one."""

import json
import shutil
from pathlib import Path

import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
import genrec.configs
from genrec.registry import UnknownModelError
from genrec.train.checkpoint import Checkpointer, CheckpointError, write_manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


@pytest.fixture(autouse=True)
def no_traceback_env(monkeypatch):
  monkeypatch.delenv("GENREC_TRACEBACK", raising=False)


def fails(*argv) -> str:
  """Runs `genrec ARGV`, expects exit code 2 and a one-line error; returns stderr."""
  code, _, err = runs.genrec_cli(*argv)
  assert code == 2, err
  assert "Traceback" not in err
  assert "error:" in err
  return err


def train_args(workdir, *sets):
  return ("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false", *sets)


# -- configs and names --------------------------------------------------------------------------------------
def test_config_typo_lists_valid_keys(tmp_path):
  err = fails(*train_args(tmp_path / "w", "trainer.stepz=5"))
  assert "trainer.stepz" in err and "'steps'" in err and "'learning_rate'" in err
  assert not (tmp_path / "w").exists()  # failed before any work


def test_wrong_type(tmp_path):
  err = fails(*train_args(tmp_path / "w", "trainer.steps=abc"))
  assert "trainer.steps=abc" in err and "expected int" in err


def test_unknown_preset_lists_presets(tmp_path):
  err = fails("train", "sasrec:nopreset", "--workdir", tmp_path / "w")
  assert "no preset 'nopreset'" in err and "'tiny'" in err


def test_unknown_model_names_registered_models(tmp_path):
  err = fails("train", "nomodel:tiny", "--workdir", tmp_path / "w")
  assert "unknown model 'nomodel'" in err and "'sasrec'" in err and "--import" in err


def test_unimportable_import_module():
  err = fails("--import", "no_such_module_xyz", "models")
  assert "no_such_module_xyz" in err


def test_a_workdir_of_an_unsupported_scheme_is_refused_before_any_work(tmp_path, monkeypatch):
  """pathlib would turn s3://bucket/run into a local folder "s3:/bucket/run"; a run folder is local or gs://
  (test_gcs.py), so another URI is refused before a stage or step trains."""
  from genrec import pipeline
  from genrec.config import ConfigError

  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
  err = fails(*train_args("s3://bucket/run"))
  assert "--workdir s3://bucket/run: s3:// run folders are not supported; a run folder is local or gs://" in err
  assert "genrec publish" in err
  cfg = genrec.configs.get("tiger:tiny")  # its tokenizer stage would train first
  with pytest.raises(ConfigError, match=r"workdir https://host/run: https:// run folders are not supported"):
    pipeline.trainer(cfg, "https://host/run")
  assert list(tmp_path.iterdir()) == []  # no local "s3:" folder, no stage in the cache


def test_missing_data_files(tmp_path):
  err = fails(*train_args(tmp_path / "w", "data.dataset=atomic:/nonexistent/x"))
  assert "x.inter" in err and "/nonexistent" in err


# -- folders that are not (good) runs -------------------------------------------------------------------------
def test_folder_that_is_not_a_run(tmp_path):
  (tmp_path / "notes.txt").write_text("hello")
  err = fails("eval", tmp_path)
  assert "is not a genrec run" in err
  with pytest.raises(CheckpointError, match="is not a genrec run"):
    genrec.load(tmp_path)
  assert "does not exist" in fails("eval", tmp_path / "missing")


def test_run_of_an_unregistered_model(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  metas = sorted(workdir.glob("*/*/meta/metadata"))
  assert {p.parent.parent.parent.name for p in metas} == {"best", "checkpoints"}
  for path in metas:
    meta = json.loads(path.read_text())
    meta["model_name"] = meta["config"]["model_name"] = "ghost_model"
    path.write_text(json.dumps(meta))
    write_manifest(path.parent.parent)  # else the edit is reported as tampering
  err = fails("eval", workdir)
  assert "'ghost_model'" in err and "--import" in err and str(workdir) in err
  with pytest.raises(UnknownModelError, match="ghost_model"):
    genrec.load(workdir, which="latest")


# Orbax's reader threads call back into an event loop that the failed restore already closed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncated_checkpoint_names_the_step(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  (step,) = Checkpointer(workdir / "best", read_only=True).steps()
  data_files = [p for p in (workdir / "best" / str(step) / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert data_files
  # Orbax leaves some data files unreferenced (truncating those alone changes nothing): cut all of them.
  for path in data_files:
    with open(path, "r+b") as f:
      f.truncate(path.stat().st_size // 2)
  with pytest.raises(CheckpointError, match=f"step {step}: file .*/best/{step}/state/d/.* is truncated"):
    genrec.load(workdir)
  for path in (workdir / "best").rglob("genrec-manifest.json"):  # without the manifest, orbax's own check
    path.unlink()
  with pytest.raises(CheckpointError, match=f"step {step} in .*/best has no manifest"):
    genrec.load(workdir)
  with pytest.raises(CheckpointError, match=f"step {step} .*damaged or incomplete"):
    genrec.load(workdir, allow_unverified=True)
  err = fails("eval", workdir, "--allow-unverified")
  assert f"step {step}" in err and "damaged or incomplete" in err
  assert genrec.load(workdir, which="latest").step == 60  # the training checkpoints are intact


def test_eval_takes_only_eval_overrides(run):
  err = fails("eval", run["dir"], "--set", "trainer.steps=5")
  assert "eval.*" in err and "trainer.steps=5" in err


def test_eval_rejects_an_unknown_candidate_protocol(run):
  assert "eval.candidates" in fails("eval", run["dir"], "--set", "eval.candidates=some")


# -- recommend ---------------------------------------------------------------------------------------------
def test_recommend_for_an_unknown_user(run):
  assert "unknown user 'nobody'" in fails("recommend", run["dir"], "--user", "nobody")


@pytest.mark.parametrize("k", [0, 1000])
def test_recommend_k_out_of_range(run, k):
  assert "k must be between 1 and" in fails("recommend", run["dir"], "--user", "u3", "--k", k)


# -- interrupted checkpoints ---------------------------------------------------------------------------------
def kill_while_saving(workdir: Path, sub: str, step: int, *, like: int):
  """What a kill leaves: orbax writes step N into "N.orbax-checkpoint-tmp" and renames it only when
  complete. Here a copy of step `like`, uncommitted, with its data files cut short."""
  partial = workdir / sub / f"{step}.orbax-checkpoint-tmp"
  shutil.copytree(workdir / sub / str(like), partial)
  for f in partial.rglob("*"):
    if f.name == "commit_success.txt":
      f.unlink()
    elif f.is_file() and f.parent.name == "d":
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_partial_later_step_is_ignored_by_load_and_resume(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  best = run["results"]["best_step"]
  kill_while_saving(workdir, "checkpoints", 90, like=60)
  kill_while_saving(workdir, "best", 90, like=best)
  assert genrec.load(workdir, which="latest").step == 60
  assert genrec.load(workdir).step == best
  log = (workdir / "metrics.jsonl").read_text()
  code, _, err = runs.genrec_cli(*train_args(workdir))
  assert code == 0, err
  assert (workdir / "metrics.jsonl").read_text() == log  # resumed at 60: nothing left to train
  assert Checkpointer(workdir / "checkpoints", read_only=True).steps() == [30, 60]


def test_kill_while_saving_the_last_step_leaves_the_one_before(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  shutil.rmtree(workdir / "checkpoints" / "60")
  kill_while_saving(workdir, "checkpoints", 60, like=30)
  assert Checkpointer(workdir / "checkpoints", read_only=True).steps() == [30]
  assert genrec.load(workdir, which="latest").step == 30
  assert genrec.load(workdir).step == run["results"]["best_step"]


def test_resume_after_a_kill_while_saving_the_last_step(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  if run["results"]["best_step"] != 60:
    pytest.skip("needs best/ to hold the killed step")
  shutil.rmtree(workdir / "checkpoints" / "60")
  kill_while_saving(workdir, "checkpoints", 60, like=30)
  code, _, err = runs.genrec_cli(*train_args(workdir))  # resumes at 30, trains 30 steps again
  assert code == 0, err
  assert Checkpointer(workdir / "checkpoints", read_only=True).steps() == [30, 60]
  latest = genrec.load(workdir, which="latest")
  assert latest.step == 60 and latest.meta["data_state"]["next_index"] == 60


def test_a_resumed_run_logs_each_step_once(run, tmp_path):
  """Killed after step 60 was logged but before it was saved (and mid-line): the resumption from step 30 drops
  the log rows past 30 and the torn line, then logs steps 31..60 again, once."""
  workdir = runs.copy_run(run, tmp_path / "run")
  shutil.rmtree(workdir / "checkpoints" / "60")
  metrics = workdir / "metrics.jsonl"
  before = [json.loads(line) for line in metrics.read_text().splitlines()]
  assert max(r["step"] for r in before) == 60
  with open(metrics, "a") as f:
    f.write('{"step": 61, "split": "tra')
  code, _, err = runs.genrec_cli(*train_args(workdir))
  assert code == 0, err
  after = [json.loads(line) for line in metrics.read_text().splitlines()]
  keys = [(r["step"], r["split"]) for r in after]
  assert len(keys) == len(set(keys)) and sorted(keys) == sorted((r["step"], r["split"]) for r in before)
  assert [r for r in after if r["step"] <= 30] == [r for r in before if r["step"] <= 30]
