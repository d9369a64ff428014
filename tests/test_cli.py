"""The `genrec` command end to end on one tiny SASRec run: train, eval, recommend, models, datasets, resume."""

import json
import time

import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
from genrec.data import load_dataset
from genrec.train.checkpoint import Checkpointer

genrec_cli = runs.genrec_cli
METRICS = ("recall@10", "ndcg@10", "mrr@10", "recall@5", "ndcg@5")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


def train_lines(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if r["split"] == "train"]


def test_train_prints_protocol_and_writes_results(run):
  assert "protocol:" in run["stdout"] and "candidates=all_minus_seen" in run["stdout"]
  assert "| test |" in run["stdout"]
  results = run["results"]
  assert set(results) >= {"model", "preset", "protocol", "valid", "test", "train_seconds", "steps"}
  assert (results["model"], results["preset"], results["steps"]) == ("sasrec", "tiny", 60)
  assert results["protocol"]["candidates"] == "all_minus_seen"
  for split in ("valid", "test"):
    assert all(0.0 <= results[split][m] <= 1.0 for m in METRICS), results[split]
  assert results["test"]["ndcg@10"] > 0.5  # planted successors; popularity gets ~0.15
  assert results["train_seconds"] > 0


def test_eval_recomputes_the_test_metrics(run):
  code, out, err = genrec_cli("eval", run["dir"])
  assert code == 0, err
  assert "protocol:" in out and "candidates=all_minus_seen" in out
  again = json.loads((run["dir"] / "results.json").read_text())
  assert "evaluated_step" in again  # written by eval, not left over from training
  for m in METRICS:
    assert again["test"][m] == pytest.approx(run["results"]["test"][m], abs=1e-6)


def test_eval_into_a_folder_it_cannot_write_prints_the_metrics_and_says_they_were_not_saved(run, monkeypatch):
  import genrec.api

  before = (run["dir"] / "results.json").read_bytes()

  def refuse(workdir, results):
    raise PermissionError(13, "Permission denied", str(workdir / "results.json"))

  monkeypatch.setattr(genrec.api, "write_results", refuse)
  code, out, err = genrec_cli("eval", run["dir"])
  assert code == 0, err
  assert "protocol:" in out and "ndcg@10" in out  # the table is printed all the same
  assert f"cannot write to {run['dir']} (Permission denied): the metrics were not saved there" in err
  assert "updated" not in err
  assert (run["dir"] / "results.json").read_bytes() == before


def test_eval_with_all_candidates_can_only_rank_lower(run):
  code, out, err = genrec_cli("eval", run["dir"], "--set", "eval.candidates=all")
  assert code == 0, err
  assert "candidates=all," in out
  again = json.loads((run["dir"] / "results.json").read_text())
  assert again["protocol"]["candidates"] == "all"
  for m in METRICS:
    assert again["test"][m] <= run["results"]["test"][m] + 1e-6
  # seen items outscore some targets once they are candidates again
  assert again["test"]["ndcg@10"] < run["results"]["test"]["ndcg@10"]


def test_recommend_prints_k_unseen_items(run):
  data = load_dataset(genrec.load(run["dir"]).config.data)
  user = data.user_raw[5]
  seen = {data.item_raw[i] for i in data.sequences[5].tolist()}
  code, out, err = genrec_cli("recommend", run["dir"], "--user", user, "--k", 5)
  assert code == 0, err
  lines = [line for line in out.splitlines() if "[item " in line]
  assert len(lines) == 5
  items = [line.split("[item ")[1].split("]")[0] for line in lines]
  assert len(set(items)) == 5 and not set(items) & seen
  assert set(items) <= set(data.item_raw[1:])

  code, out, err = genrec_cli("recommend", run["dir"], "--user", user, "--k", 5, "--json")
  assert code == 0, err
  recs = json.loads(out)
  assert [r["item"] for r in recs] == items
  scores = [r["score"] for r in recs]
  assert scores == sorted(scores, reverse=True)


def test_models_and_datasets_list():
  code, out, _ = genrec_cli("models")
  assert code == 0
  assert "sasrec" in out.splitlines() and "sasrec:tiny" in out and "sasrec:ml100k" in out
  code, out, _ = genrec_cli("datasets", "list")
  assert code == 0
  assert "synthetic" in out and "ml-100k" in out


def test_train_again_resumes_without_training(run):
  before = train_lines(run["dir"])
  code, out, err = genrec_cli("train", "sasrec:tiny", "--workdir", run["dir"], "--set", "trainer.progress=false")
  assert code == 0, err
  assert train_lines(run["dir"]) == before  # no step was trained again
  assert json.loads((run["dir"] / "results.json").read_text())["steps"] == 60
  assert Checkpointer(run["dir"] / "checkpoints", read_only=True).latest_step() == 60
  assert "protocol:" in out


def test_train_with_a_different_config_refuses_then_fresh_starts_over(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  base = ("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false")
  code, _, err = genrec_cli(*base, "model.dim=16")
  assert code == 2
  assert "model.dim" in err and "--fresh" in err and "Traceback" not in err
  assert genrec.load(workdir).config.model.dim == 32  # untouched

  # data.seed changes the run but not the compiled step, so the fresh run reuses the compile cache
  started = time.time()
  code, _, err = genrec_cli(*base, "data.seed=1", "--fresh")
  assert code == 0, err
  assert genrec.load(workdir, which="latest").config.data.seed == 1
  lines = train_lines(workdir)
  assert [r["step"] for r in lines] == [10, 20, 30, 40, 50, 60]  # the old log went with the old run
  assert all(r["time"] >= started for r in lines)
  assert json.loads((workdir / "results.json").read_text())["steps"] == 60
