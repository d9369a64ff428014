"""TIGER end to end: the tokenizer stage runs first, its table travels inside TIGER's checkpoint."""

import contextlib
import io

import numpy as np
import pytest

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import ConfigError
from genrec.data import load_dataset
from genrec.families import semantic_ids


@pytest.fixture(scope="module")
def cache(stage_cache):
  return stage_cache


@pytest.fixture(scope="module")
def tiger_run(cache, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tiger")
  cfg = config_lib.override(genrec.configs.get("tiger:tiny"), ["trainer.progress=false"])
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    results = pipeline.trainer(cfg, workdir, resume=False).run()
  return workdir, results, stderr.getvalue()


def test_tiger_learns_through_its_tokenizer_stage(tiger_run, cache):
  workdir, results, stderr = tiger_run
  assert "stage rqkmeans:tiny" in stderr and "step/s" not in stderr and "train:" not in stderr  # no bars
  assert results["test"]["ndcg@10"] > 0.4  # popularity on the planted cycle: ~0.15
  assert 0.0 <= results["test"]["invalid_unconstrained@20"] < 1.0
  (stage,) = (cache / "stages").iterdir()
  assert stage.name.startswith("rqkmeans-")
  table, meta = semantic_ids.read_semantic_ids(stage)
  run = genrec.load(workdir)
  assert run.config.model.semantic_ids_version == meta["version"]
  assert run.config.model.code_levels == table.shape[1]
  np.testing.assert_array_equal(np.asarray(run.model.item_codes[...]), table)


def test_recommend_returns_real_unseen_items(tiger_run):
  workdir = tiger_run[0]
  run = genrec.load(workdir)
  data = load_dataset(run.config.data)
  user = data.user_raw[5]
  recs = run.recommend(user, k=10)
  seen = {data.item_raw[i] for i in data.sequences[5]}
  assert len(recs) == 10 and not seen & {r["item"] for r in recs}
  assert all(r["item"] in data.item_raw[1:] for r in recs)


def test_a_different_semantic_id_table_is_refused(tiger_run, cache, tmp_path):
  workdir = tiger_run[0]
  cfg = config_lib.override(
    genrec.configs.get("tiger:tiny"), ["trainer.progress=false", "model.semantic_ids_version=0123456789abcdef"]
  )
  with pytest.raises(ConfigError, match="semantic-ID table 0123456789abcdef.*gives table"):
    pipeline.trainer(cfg, tmp_path)
  # Resuming the finished run after its tokenizer stage produced another table (same config, new codes).
  (stage,) = (cache / "stages").iterdir()
  table, meta = semantic_ids.read_semantic_ids(stage)
  swapped = table.copy()
  swapped[[1, 2]] = swapped[[2, 1]]
  semantic_ids.write_semantic_ids(stage, swapped, meta["stats"], genrec.configs.get("rqkmeans:tiny"))
  try:
    with pytest.raises(ConfigError, match="different config.*semantic_ids_version"):
      pipeline.trainer(config_lib.override(genrec.configs.get("tiger:tiny"), ["trainer.progress=false"]), workdir)
  finally:
    semantic_ids.write_semantic_ids(stage, table, meta["stats"], genrec.configs.get("rqkmeans:tiny"))


def test_mask_history_trains_on_rows_that_carry_older_items(cache, tmp_path):
  """model.mask_history: the task's training rows carry "before" (the items older than the window; plain
  rows do not), and the trainer runs on them."""
  sets = ["trainer.progress=false", "model.item_causal=true", "model.mask_seen=true", "trainer.steps=20"]
  plain = pipeline.trainer(config_lib.override(genrec.configs.get("tiger:tiny"), sets), tmp_path / "plain")
  assert "before" not in plain.train_data[0]
  trainer = pipeline.trainer(
    config_lib.override(genrec.configs.get("tiger:tiny"), [*sets, "model.mask_history=true"]), tmp_path / "history"
  )
  batch = trainer.train_data[0]
  assert batch["before"].shape[0] == batch["inputs"].shape[0] and (batch["before"] > 0).any()
  results = trainer.run()
  assert np.isfinite(results["test"]["ndcg@10"])
