"""gs:// run folders against an in-memory GCS emulator on loopback (fixtures_gcs): a published run uploaded to a
bucket loads checked against its sha256 manifest (genrec.load, genrec eval, --init-from); `genrec train
--workdir gs://...` writes its checkpoints, metrics, results, config and TensorBoard events there, resumes, and
loads back in place."""

from __future__ import annotations

import json
import shutil

import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
from fixtures_gcs import gcs  # noqa: F401 (a fixture)
from genrec import files, hub
from genrec.api import evaluate_run
from genrec.errors import CheckpointError

METRICS = ("ndcg@10", "recall@10", "mrr@10")
QUIET = ("--set", "trainer.progress=false")


def assert_reproduces(run, results):
  again = evaluate_run(run, write=False)
  for k in METRICS:
    assert again["test"][k] == pytest.approx(results["test"][k], abs=1e-6), k


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


def test_a_published_run_in_a_bucket_loads_checked_and_reproduces(gcs, cache, tmp_path_factory, tmp_path):
  run = runs.sasrec_run(tmp_path_factory)
  out = hub.publish(run["dir"], tmp_path / "pub")
  uri = gcs.upload(out, "gs://bucket/published/sasrec")
  loaded = genrec.load(uri)
  assert loaded.workdir.is_relative_to(cache / "hub")  # fetched once, checked, read locally
  assert_reproduces(loaded, run["results"])
  code, stdout, err = runs.genrec_cli("eval", uri)
  assert code == 0, err
  assert f"{run['results']['test']['ndcg@10']:.4f}" in stdout and "is a published run" in err
  code, _, err = runs.genrec_cli(
    "train", "sasrec:tiny", "--workdir", tmp_path / "warm", "--init-from", uri, *QUIET,
    "trainer.steps=2", "trainer.eval_every=2",
  )  # fmt: skip
  assert code == 0, err
  assert f"warm start from {uri}" in err

  # One object that differs from the manifest: refused before anything is read.
  altered = shutil.copytree(out, tmp_path / "altered")
  (altered / "config.json").write_text((out / "config.json").read_text().replace("sasrec", "sasrek", 1))
  with pytest.raises(CheckpointError, match="the downloaded config.json does not match its published size and sha256"):
    genrec.load(gcs.upload(altered, "gs://bucket/published/altered"))
  with pytest.raises(CheckpointError, match=r"gs://bucket/nothing: manifest.json is not there: not a published run"):
    genrec.load("gs://bucket/nothing")
  with pytest.raises(CheckpointError, match=r"gs://no-such-bucket/run: the bucket gs://no-such-bucket does not exist"):
    genrec.load("gs://no-such-bucket/run")
  code, _, err = runs.genrec_cli("eval", "gs://bucket/nothing")
  assert code != 0 and "manifest.json is not there" in err


def rows(text: str) -> list[tuple[int, str]]:
  return [(r["step"], r["split"]) for r in map(json.loads, text.splitlines())]


def test_train_into_a_bucket_resumes_and_loads_back_in_place(gcs, cache, tmp_path_factory, tmp_path, monkeypatch):
  from etils import epath

  local = runs.sasrec_run(tmp_path_factory)  # the same config trained in one go into a local folder
  monkeypatch.chdir(tmp_path)
  uri = "gs://bucket/runs/sasrec"
  code, _, err = runs.genrec_cli("train", "sasrec:tiny", "--workdir", uri, *QUIET, "--stop-at", "30")
  assert code == 0, err
  assert f"genrec: {uri} is not locked" in err
  folder = epath.Path(uri)
  assert [p.name for p in (folder / "checkpoints").iterdir()] == ["30"]
  assert rows((folder / "metrics.jsonl").read_text()) == [r for r in rows(local_text(local)) if r[0] <= 30]
  code, stdout, err = runs.genrec_cli("train", "sasrec:tiny", "--workdir", uri, *QUIET)  # resumes at step 30
  assert code == 0, err
  assert f"results: {uri}/results.json" in stdout
  assert list(tmp_path.iterdir()) == []  # nothing local: no "gs:" folder

  # Every row once, as in the run trained in one go; the same results; the files a run folder holds.
  assert rows((folder / "metrics.jsonl").read_text()) == rows(local_text(local))
  results = json.loads((folder / "results.json").read_text())
  for k in METRICS:
    assert results["test"][k] == pytest.approx(local["results"]["test"][k], abs=1e-6), k
  assert json.loads((folder / "config.json").read_text())["trainer"]["steps"] == 60
  assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["30", "60"]
  for step in ("30", "60"):
    assert (folder / "checkpoints" / step / "genrec-manifest.json").is_file()
  events = [p.name for p in (folder / "tensorboard").iterdir()]
  assert len([e for e in events if e.startswith("events.out.tfevents")]) == 2 and "results" in events

  loaded = genrec.load(uri)  # read in place: orbax restores from the bucket, the manifest is checked
  assert str(loaded.workdir) == uri and loaded.step == results["best_step"]
  assert_reproduces(loaded, results)
  code, stdout, err = runs.genrec_cli("eval", uri)
  assert code == 0, err
  assert f"updated {uri}/results.json" in err
  assert json.loads((folder / "results.json").read_text())["evaluated_step"] == results["best_step"]

  # A damaged object in the bucket is caught by the checkpoint's manifest, as on a local disk.
  victim = max((p for p in files.tree(folder / "best") if p.name != "genrec-manifest.json"), key=files.size)
  victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
  with pytest.raises(CheckpointError, match="was modified after it was written|truncated"):
    genrec.load(uri)


def local_text(run) -> str:
  return (run["dir"] / "metrics.jsonl").read_text()
