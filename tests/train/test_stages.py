"""Tokenizer stages through the shared trainer: item embeddings in, a versioned semantic-ID table out."""

import dataclasses
import json

import numpy as np
import pytest

import genrec.configs
from fixtures_stages import stage_config
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import DataConfig
from genrec.data import load_dataset
from genrec.data.errors import DataError
from genrec.families import semantic_ids
from genrec.families.content import sources

NUM_ITEMS = 64  # the synthetic catalogue of the tiny presets


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """Item embeddings in 4 well-separated clusters of 16 items (item i in cluster (i-1) // 16)."""
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 24)) * 10
  emb = np.repeat(centres, 16, axis=0) + rng.normal(size=(NUM_ITEMS, 24)) * 0.1
  path = tmp_path_factory.mktemp("emb") / "items.npy"
  np.save(path, emb.astype(np.float32))
  return path


def tokenizer_cfg(spec, planted, *extra):
  return config_lib.override(
    genrec.configs.get(spec), ["trainer.progress=false", f"data.item_embeddings=npy:{planted}", *extra]
  )


@pytest.fixture(scope="module")
def rqkmeans_run(planted, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("rqk")
  cfg = tokenizer_cfg("rqkmeans:tiny", planted, "model.levels=2", "model.codebook_size=4")
  return workdir, pipeline.trainer(cfg, workdir, resume=False).run()


def test_rqkmeans_codes_recover_planted_clusters(rqkmeans_run):
  workdir, results = rqkmeans_run
  table, meta = semantic_ids.read_semantic_ids(workdir)
  assert table.shape == (NUM_ITEMS + 1, 3) and (table[0] == 0).all()
  first = table[1:, 0]
  for c in range(4):  # every item of a cluster shares its first code, clusters differ
    assert len(set(first[c * 16 : (c + 1) * 16])) == 1
  assert len(set(first)) == 4
  assert len({tuple(r) for r in table[1:]}) == NUM_ITEMS  # the extra digit makes every tuple unique
  assert meta["stats"]["usage"][0] == 1.0 and results["semantic_ids"]["version"] == meta["version"]
  assert results["valid"]["recon"] < 1.0  # clusters of spread 0.1 in 24 dims: ~0.24 after level 1


def test_tampered_table_is_detected(rqkmeans_run, tmp_path):
  workdir, _ = rqkmeans_run
  table, meta = semantic_ids.read_semantic_ids(workdir)
  semantic_ids.write_semantic_ids(tmp_path, table, meta["stats"], genrec.configs.get("rqkmeans:tiny"))
  assert semantic_ids.read_semantic_ids(tmp_path)[1]["version"] == meta["version"]
  table[5, 0] = (table[5, 0] + 1) % 4
  (codes,) = (tmp_path / "artifacts").glob("semantic_ids.codes.*.npy")
  np.save(codes, table, allow_pickle=False)  # changed by hand
  with pytest.raises(DataError, match="does not match its recorded version"):
    semantic_ids.read_semantic_ids(tmp_path)
  with pytest.raises(DataError, match="no readable semantic-ID table"):
    semantic_ids.read_semantic_ids(tmp_path / "nowhere")


def test_rqvae_trains_and_exports(planted, tmp_path):
  cfg = tokenizer_cfg(
    "rqvae:tiny", planted, "model.levels=2", "model.codebook_size=4", "trainer.steps=60", "trainer.eval_every=30"
  )
  results = pipeline.trainer(cfg, tmp_path, resume=False).run()
  log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  valid = [r["recon"] for r in log if r["split"] == "valid"]
  assert valid[-1] < valid[0] or valid[0] < 0.05
  table, _ = semantic_ids.read_semantic_ids(tmp_path)
  assert table.shape == (NUM_ITEMS + 1, 3)
  assert results["semantic_ids"]["stats"]["usage"][0] == 1.0  # k-means init puts a code on each cluster


def test_run_stage_reuses_a_finished_run(planted, tmp_path, monkeypatch):
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  data_cfg = DataConfig(dataset="synthetic", item_embeddings=f"npy:{planted}")
  cfg = stage_config("rqkmeans:tiny", ["model.codebook_size=4", "trainer.progress=false"], data_cfg)
  first = pipeline.build_stage(cfg)
  stamp = (first / "results.json").stat().st_mtime_ns
  assert pipeline.build_stage(cfg) == first and (first / "results.json").stat().st_mtime_ns == stamp
  other = stage_config("rqkmeans:tiny", ["model.codebook_size=8", "trainer.progress=false"], data_cfg)
  assert pipeline.stage_dir(other) != first


def test_bad_inputs(planted, tmp_path):
  data = load_dataset(DataConfig(dataset="synthetic"))
  short = tmp_path / "short.npy"
  np.save(short, np.zeros((NUM_ITEMS - 1, 8), np.float32))
  with pytest.raises(DataError, match=r"shape \(63, 8\).*64 items"):
    sources.item_embeddings(data, DataConfig(dataset="synthetic", item_embeddings=f"npy:{short}"))
  with pytest.raises(DataError, match="no such file"):
    sources.item_embeddings(data, DataConfig(dataset="synthetic", item_embeddings="npy:/nowhere.npy"))
  ml = load_dataset(DataConfig())
  with pytest.raises(DataError, match="1 item.*no text.*'267'.*empty_item_text=placeholder"):
    sources.item_texts(ml, "error")
  assert sources.item_texts(ml, "placeholder")[266] == "item 267"
  with pytest.raises(ValueError, match="codebook_size=128 is larger than the catalogue of 64"):
    pipeline.trainer(tokenizer_cfg("rqkmeans:tiny", planted, "model.codebook_size=128"), tmp_path, resume=False)


def test_export_ids_writes_csv_and_json(rqkmeans_run, tmp_path):
  import csv

  from genrec import cli

  workdir, _ = rqkmeans_run
  table, meta = semantic_ids.read_semantic_ids(workdir)
  assert cli.main(["export-ids", str(workdir), "--out", str(tmp_path / "ids.json")]) == 0
  exported = json.loads((tmp_path / "ids.json").read_text())
  data = load_dataset(DataConfig(dataset="synthetic"))
  assert exported["version"] == meta["version"] and len(exported["items"]) == NUM_ITEMS
  assert exported["items"][data.item_raw[5]] == table[5].tolist()
  assert cli.main(["export-ids", str(workdir), "--out", str(tmp_path / "ids.csv")]) == 0
  rows = list(csv.reader((tmp_path / "ids.csv").open()))
  assert rows[0] == ["item", "title", "c0", "c1", "c2"] and len(rows) == NUM_ITEMS + 1
  assert cli.main(["export-ids", str(workdir), "--out", str(tmp_path / "ids.txt")]) == 2


def test_a_changed_encoder_preset_is_a_new_tokenizer_stage(tmp_path, monkeypatch):
  """The tokenizer over run:MODEL:PRESET embeddings is keyed by the encoder stage too: when the encoder's
  preset changes (new embeddings), the tokenizer stage is not reused."""
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  data_cfg = DataConfig(dataset="synthetic", item_embeddings="run:mmenc:tiny")
  cfg = stage_config("rqkmeans:tiny", ["trainer.progress=false"], data_cfg)
  before = pipeline.stage_dir(cfg)
  assert pipeline.stage_dir(cfg) == before  # deterministic
  get = genrec.configs.get

  def changed(spec):
    out = get(spec)
    if spec == "mmenc:tiny":
      out = dataclasses.replace(out, model=dataclasses.replace(out.model, id_dropout=0.5))
    return out

  monkeypatch.setattr(genrec.configs, "get", changed)
  assert pipeline.stage_dir(cfg) != before
  assert not any(tmp_path.glob("stages/mmenc-*"))  # computing a key trains nothing


def test_tokenizer_stage_key_is_the_catalogue_not_the_history_window(tmp_path, monkeypatch):
  """A dependent run's history length or window does not change its tokenizer stage (the stage keeps its own
  preset's sequence fields); its catalogue, embeddings or seed do."""
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  key = lambda **data: pipeline.stage_dir(
    stage_config("rqkmeans:tiny", [], DataConfig(**{"dataset": "synthetic", "item_embeddings": "random:8", **data}))
  )
  base = key(max_len=10, train_window="random")
  assert key(max_len=30, train_window="last") == base
  own = genrec.configs.get("rqkmeans:tiny").data
  cfg = stage_config("rqkmeans:tiny", [], DataConfig(dataset="synthetic", max_len=own.max_len + 7))
  assert (cfg.data.max_len, cfg.data.train_window) == (own.max_len, own.train_window)
  for changed in (dict(item_embeddings="random:16"), dict(seed=1), dict(synthetic_items=48), dict(cold_items=0.1)):
    assert key(max_len=10, **changed) != base, changed
