"""A model defined outside genrec (tests/extension/toymodel.py) trains, loads and evaluates through the same
CLI and API; models are found through --import or a 'genrec.models' entry point; NaN losses stop training."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrec
import genrec.configs
from genrec import cli, pipeline, registry
from genrec import config as config_lib
from genrec.data.synthetic import planted_successor
from genrec.train.trainer import NonFiniteLossError, train

EXTENSION = Path(__file__).parent / "extension"


def genrec_cli(*argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main([str(a) for a in argv])
  return code, out.getvalue(), err.getvalue()


def train_outside_model(tmp_path_factory, module: str, spec: str) -> tuple[Path, str, str]:
  """`genrec --import MODULE train SPEC` with tests/extension on sys.path (as a user's own folder):
  (workdir, stdout, stderr)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.syspath_prepend(str(EXTENSION))
    workdir = tmp_path_factory.mktemp(spec.partition(":")[0])
    code, out, err = genrec_cli(
      "--import", module, "train", spec, "--workdir", workdir, "--set", "trainer.progress=false"
    )
    assert code == 0, err
  return workdir, out, err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """toy_bigram:tiny trained through the CLI."""
  workdir, out, _ = train_outside_model(tmp_path_factory, "toymodel", "toy_bigram:tiny")
  return workdir, out


def test_external_model_learns_planted_successors(toy_run):
  workdir, out = toy_run
  assert "toy_bigram:tiny" in out and "protocol:" in out
  results = json.loads((workdir / "results.json").read_text())
  assert (results["model"], results["steps"]) == ("toy_bigram", 60)
  # The next item is the cycle successor with p=0.9; popularity gets ndcg@10 ~0.15, the bigram ~0.93.
  assert results["test"]["ndcg@10"] > 0.6
  assert results["valid"]["recall@10"] > 0.7


def test_external_model_loads_in_the_same_process(toy_run):
  import toymodel

  workdir, _ = toy_run
  run = genrec.load(workdir)
  assert run.config.model_name == "toy_bigram" and run.config.model == toymodel.ToyConfig(num_items=64)
  assert type(run.model) is toymodel.ToyBigram
  table = np.asarray(run.model.table_NxN[...])
  succ = planted_successor(run.config.data)
  assert (table[1:].argmax(-1) == succ[1:]).mean() > 0.9  # row i peaks at i's successor
  recs = run.recommend(run.dataset().user_raw[0], k=3)
  assert len({r["item"] for r in recs}) == 3


def test_external_model_evaluates_through_the_cli(toy_run):
  workdir, _ = toy_run
  before = json.loads((workdir / "results.json").read_text())
  code, out, err = genrec_cli("eval", workdir, "--import", "toymodel")
  assert code == 0, err
  assert "toy_bigram:tiny" in out
  after = json.loads((workdir / "results.json").read_text())
  assert "evaluated_step" in after
  assert after["test"]["ndcg@10"] == pytest.approx(before["test"]["ndcg@10"], abs=1e-6)


def test_a_fresh_process_without_import_names_the_missing_model(toy_run):
  """The point is a process where toymodel was never imported."""
  workdir, _ = toy_run
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GENREC_TRACEBACK")}
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run(
    [sys.executable, "-m", "genrec.cli", "eval", str(workdir)], capture_output=True, text=True, env=env, timeout=120
  )
  assert proc.returncode == 2, proc.stderr
  assert "'toy_bigram'" in proc.stderr and "--import" in proc.stderr and "Traceback" not in proc.stderr


# -- entry points ---------------------------------------------------------------------------------------------
def fake_distribution(root: Path, name: str, entry_points: str, modules: dict[str, str]):
  dist = root / f"{name}-0.0.dist-info"
  dist.mkdir(parents=True)
  (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0\n")
  (dist / "entry_points.txt").write_text(entry_points)
  for module, source in modules.items():
    (root / f"{module}.py").write_text(source)


TOY_EP = """
import dataclasses
from flax import nnx
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class EPConfig:
  num_items: int = 0


@register("toy_ep", EPConfig)
class ToyEP(nnx.Module):
  pass
"""


@pytest.fixture
def clean_registry():
  registry.import_all(registry.BUILTIN)  # built-in models stay registered; only the test's own go
  names = set(registry._MODELS)
  yield
  for name in set(registry._MODELS) - names:
    del registry._MODELS[name]
  for module in ("toymodel_ep", "toymodel_broken"):
    sys.modules.pop(module, None)


def test_entry_point_registers_a_model_without_import(tmp_path, monkeypatch, clean_registry):
  fake_distribution(tmp_path, "fakepkg", "[genrec.models]\ntoy_ep = toymodel_ep\n", {"toymodel_ep": TOY_EP})
  assert "toy_ep" not in genrec.list_models()
  monkeypatch.syspath_prepend(str(tmp_path))
  assert "toymodel_ep" not in sys.modules
  assert "toy_ep" in genrec.list_models()
  assert registry.model_class("toy_ep").__name__ == "ToyEP"
  code, out, _ = genrec_cli("models")
  assert code == 0 and "toy_ep" in out.splitlines()


def test_broken_entry_point_is_named(tmp_path, monkeypatch, clean_registry):
  fake_distribution(
    tmp_path,
    "brokenpkg",
    "[genrec.models]\nbroken = toymodel_broken\n",
    {"toymodel_broken": "raise RuntimeError('boom')\n"},
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(ImportError, match="entry point 'broken'.*boom"):
    genrec.list_models()
  code, _, err = genrec_cli("models")
  assert code == 2 and "entry point 'broken'" in err


# -- NaN guard -----------------------------------------------------------------------------------------------
def test_nan_loss_stops_training_naming_the_step(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(EXTENSION))
  registry.import_module("toymodel")
  cfg = config_lib.override(genrec.configs.get("toy_nan:nan"), ["trainer.progress=false"])
  assert cfg.model_name == "toy_nan"
  with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 1\b"):
    train(cfg, tmp_path / "api")

  code, _, err = genrec_cli(
    "--import", "toymodel", "train", "toy_nan:nan", "--workdir", tmp_path / "cli", "--set", "trainer.progress=false"
  )
  assert code == 2
  assert "loss became nan at step 1" in err and "Traceback" not in err


# -- a semantic-ID retriever in one model file and one config file (the README's worked example) -------------
@pytest.fixture(scope="module")
def codebag_run(tmp_path_factory, stage_cache):
  workdir, _, err = train_outside_model(tmp_path_factory, "codebag_configs", "codebag:tiny")
  return workdir, err


def test_a_semantic_id_retriever_from_outside_trains_with_its_tokenizer_stage(codebag_run, stage_cache):
  from genrec.families.semantic_ids import read_semantic_ids

  workdir, err = codebag_run
  (tokenizer,) = (stage_cache / "stages").glob("rqkmeans-*")
  assert f"stage rqkmeans:tiny -> {tokenizer}" in err  # the stage came first, in this cache
  table, meta = read_semantic_ids(tokenizer)
  run = genrec.load(workdir)
  assert run.config.model.semantic_ids_version == meta["version"]
  assert (run.config.model.code_levels, run.config.model.codebook_size) == (table.shape[1], table.max() + 1)
  np.testing.assert_array_equal(np.asarray(run.model.item_codes[...]), table)  # loaded by the task, checkpointed
  results = json.loads((workdir / "results.json").read_text())
  assert results["test"]["ndcg@10"] > 0.5  # the planted successor through codes alone (popularity ~0.15)
  assert len(run.recommend(run.dataset().user_raw[0], k=3)) == 3
  code, out, _ = genrec_cli("eval", workdir, "--import", "codebag_configs")
  assert code == 0 and "codebag:tiny" in out


def test_a_model_missing_what_its_task_calls_is_named_before_training(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(EXTENSION))
  registry.import_module("toymodel")
  cfg = config_lib.override(
    genrec.configs.get("toy_bigram:tiny"), ["trainer.progress=false", "model.task=semantic_id_retrieval"]
  )
  with pytest.raises(
    config_lib.ConfigError,
    match=r"model 'toy_bigram' \(task 'semantic_id_retrieval'\): ToyBigram "
    r"does not provide what it needs — SemanticIDRetriever .*"
    r"set_item_codes",
  ):
    pipeline.train(cfg, tmp_path / "run")
  unknown = config_lib.override(cfg, ["model.task=nosuchtask"])
  with pytest.raises(
    config_lib.ConfigError,
    match=r"model 'toy_bigram' needs task 'nosuchtask', which is not "
    r"registered in this process; registered tasks: \[.*'next_item'",
  ):
    pipeline.train(unknown, tmp_path / "run")
  assert not (tmp_path / "run").exists()
