"""Stages are resolved before a trainer starts: `genrec train` builds them, evaluation and loading only find them
(a missing stage is one error naming what builds it)."""

import dataclasses

import pytest

import genrec
import genrec.configs
from fixtures_runs import genrec_cli
from genrec import config as config_lib
from genrec import pipeline
from genrec.errors import MissingStageError
from genrec.train.tasks import Stages
from genrec.train.trainer import Trainer


@pytest.fixture(scope="module")
def tiger_run(tmp_path_factory, stage_cache):
  workdir = tmp_path_factory.mktemp("tiger")
  code, _, err = genrec_cli(
    "train",
    "tiger:tiny",
    "--workdir",
    workdir,
    "--set",
    "trainer.progress=false",
    "trainer.steps=20",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
  )
  assert code == 0, err
  return workdir


def test_train_builds_the_stage_once_and_reuses_it(tiger_run, stage_cache, tmp_path):
  (tokenizer,) = (stage_cache / "stages").glob("rqkmeans-*")
  cfg = genrec.load(tiger_run).config
  assert pipeline.locate(cfg).folder("tokenizer") == tokenizer
  stamp = (tokenizer / "results.json").stat().st_mtime_ns
  code, _, err = genrec_cli(
    "train",
    "tiger:tiny",
    "--workdir",
    tmp_path / "again",
    "--set",
    "trainer.progress=false",
    "trainer.steps=2",
    "trainer.eval_every=2",
  )
  assert code == 0 and "stage rqkmeans" not in err  # reused: no "stage ... ->" line
  assert (tokenizer / "results.json").stat().st_mtime_ns == stamp


def test_evaluation_and_loading_never_train_a_stage(tiger_run, tmp_path, monkeypatch):
  """The TIGER checkpoint holds its code table: an empty cache is enough to evaluate and recommend."""
  empty = tmp_path / "empty-cache"
  monkeypatch.setenv("GENREC_CACHE", str(empty))
  before = genrec.load(tiger_run)
  code, out, err = genrec_cli("eval", tiger_run)
  assert code == 0, err
  assert "tiger:tiny" in out and not empty.exists()
  user = before.dataset().user_raw[0]
  assert len(before.recommend(user, k=3)) == 3 and not empty.exists()
  with pytest.raises(
    MissingStageError,
    match=r"the tokenizer stage rqkmeans:tiny of .* is not in .*"
    r"evaluation and loading never train a stage",
  ):
    pipeline.locate(before.config).folder("tokenizer")


def test_a_trainer_without_its_stages_says_how_to_get_them(tmp_path):
  cfg = config_lib.override(genrec.configs.get("tiger:tiny"), ["trainer.progress=false"])
  with pytest.raises(MissingStageError, match="reads its tokenizer stage, which was not resolved.*genrec train"):
    Trainer(cfg, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_stage_that_cannot_be_located_is_reported_only_when_read(stage_cache):
  cfg = genrec.configs.get("tiger:tiny")
  cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, tokenizer="rqkmeans:nosuchpreset"))
  stages = pipeline.locate(cfg)
  assert isinstance(stages, Stages) and "tokenizer" not in stages
  with pytest.raises(MissingStageError, match="cannot be located .*no preset 'nosuchpreset'"):
    stages.folder("tokenizer")
