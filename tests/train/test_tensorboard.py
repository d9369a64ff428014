"""TensorBoard logs of a run: after a kill and a resume every train and valid scalar appears once per step (the
steps logged past the last checkpoint purged), and the end of the run logs its hyperparameters, config and
valid/test metrics. Tags are as tensorboardX writes them (ndcg@10 -> ndcg_10). Read back with tests/tb_events.py
(tensorboardX's protos), and with TensorBoard's own EventAccumulator where tensorboard is installed
(pip install 'genrec[tensorboard]')."""

import json
import shutil

import pytest
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import tb_events


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


@pytest.fixture(scope="module")
def resumed(run, tmp_path_factory):
  """The run killed after step 60 was logged but before it was saved: resumed from step 30."""
  workdir = runs.copy_run(run, tmp_path_factory.mktemp("tb") / "run")
  shutil.rmtree(workdir / "checkpoints" / "60")
  code, _, err = runs.genrec_cli("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false")
  assert code == 0, err
  return workdir


def test_each_step_is_logged_once_after_a_resume(resumed):
  raw = tb_events.scalars(resumed / "tensorboard", purge=False)
  assert [s for s, _ in raw["train/loss"]] == [10, 20, 30, 40, 50, 60, 40, 50, 60]  # steps 31..60 ran twice
  shown = tb_events.scalars(resumed / "tensorboard")
  assert [s for s, _ in shown["train/loss"]] == [10, 20, 30, 40, 50, 60]
  assert [s for s, _ in shown["valid/ndcg_10"]] == [30, 60]
  assert [v for _, v in shown["train/loss"][3:]] == [v for _, v in raw["train/loss"][6:]]  # the resumed values
  rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["step"], r["split"]) for r in rows]
  assert len(keys) == len(set(keys))
  assert {s: v for s, v in shown["train/loss"]} == {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def test_the_end_of_a_run_logs_hparams_config_and_test_metrics(resumed):
  results = json.loads((resumed / "results.json").read_text())
  folder = resumed / "tensorboard" / "results"
  scalars = tb_events.scalars(folder)
  assert scalars["test/ndcg_10"] == [(60, pytest.approx(results["test"]["ndcg@10"]))]
  assert scalars["valid/recall_10"] == [(60, pytest.approx(results["valid"]["recall@10"]))]
  text = tb_events.plugin_values(folder, "text")["config/text_summary"]
  assert '"model_name": "sasrec"' in text.tensor.string_val[0].decode()
  hp = tb_events.plugin_values(folder, "hparams")
  start = HParamsPluginData.FromString(hp["_hparams_/session_start_info"].metadata.plugin_data.content)
  assert start.session_start_info.hparams["trainer.steps"].number_value == 60
  assert start.session_start_info.hparams["model_name"].string_value == "sasrec"
  experiment = HParamsPluginData.FromString(hp["_hparams_/experiment"].metadata.plugin_data.content).experiment
  assert "test/ndcg_10" in {m.name.tag for m in experiment.metric_infos}
  assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the first finish's copy was replaced


def test_tensorboard_itself_reads_the_same(resumed):
  accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
  acc = accumulator.EventAccumulator(str(resumed / "tensorboard"))
  acc.Reload()
  assert [e.step for e in acc.Scalars("train/loss")] == [10, 20, 30, 40, 50, 60]
  assert [e.step for e in acc.Scalars("valid/ndcg_10")] == [30, 60]
  results = accumulator.EventAccumulator(str(resumed / "tensorboard" / "results"))
  results.Reload()
  assert [e.step for e in results.Scalars("test/ndcg_10")] == [60]


def test_eval_logs_the_metrics_it_recomputed_and_leaves_the_finish_alone(run, tmp_path):
  """`genrec eval` (here under another protocol) writes DIR/tensorboard/eval: its metrics at the evaluated step and
  the config it evaluated with; the finish's DIR/tensorboard/results stays as training wrote it."""
  workdir = runs.copy_run(run, tmp_path / "run")
  finish = {p.name: p.read_bytes() for p in (workdir / "tensorboard" / "results").iterdir()}
  for _ in range(2):  # a second eval replaces the first one's events
    code, _, err = runs.genrec_cli("eval", workdir, "--set", "eval.candidates=all")
    assert code == 0, err
  assert f"TensorBoard: {workdir / 'tensorboard' / 'eval'}" in err
  results = json.loads((workdir / "results.json").read_text())
  assert results["protocol"]["candidates"] == "all" and results["test"] != run["results"]["test"]
  folder = workdir / "tensorboard" / "eval"
  assert len(list(folder.glob("events.out.tfevents.*"))) == 1
  scalars = tb_events.scalars(folder)
  step = results["evaluated_step"]
  assert scalars["test/ndcg_10"] == [(step, pytest.approx(results["test"]["ndcg@10"]))]
  assert scalars["valid/recall_10"] == [(step, pytest.approx(results["valid"]["recall@10"]))]
  text = tb_events.plugin_values(folder, "text")["config/text_summary"].tensor.string_val[0].decode()
  assert '"candidates": "all"' in text
  assert {p.name: p.read_bytes() for p in (workdir / "tensorboard" / "results").iterdir()} == finish
