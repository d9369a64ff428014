"""User-facing errors that no other test triggered, one test each (docs/errors.md lists them all). Each test
makes the mistake a user would make and checks that the message names the key, file or value at fault."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from flax import nnx

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
from genrec import registry
from genrec.config import ConfigError, DataConfig, EvalConfig
from genrec.families.llm_cf.cf import CFArtifactError, load_cf_artifact
from genrec.models import hf
from genrec.train.checkpoint import MANIFEST, CheckpointError, write_manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


def cli_error(*argv) -> str:
  """The one-line message of `genrec ARGV`, which must fail with exit code 2 and no traceback (whatever
  GENREC_TRACEBACK the test run was started with)."""
  with mock.patch.dict(os.environ):
    os.environ.pop("GENREC_TRACEBACK", None)
    code, _, err = runs.genrec_cli(*argv)
  assert code == 2 and "Traceback" not in err, err
  (line,) = [x for x in err.splitlines() if ": error: " in x]
  return line.split(": error: ", 1)[1]


def train_error(tmp_path, *sets, flags=()) -> str:
  return cli_error(
    "train", "sasrec:tiny", "--workdir", tmp_path / "w", *flags, "--set", "trainer.progress=false", *sets
  )


# -- config checked by the trainer --------------------------------------------------------------------------
@pytest.mark.parametrize(
  "assignment, message",
  [
    ("trainer.best_mode=up", "trainer.best_mode must be 'max' or 'min', got 'up'"),
    ("trainer.grad_accum=3", "trainer.batch_size=64 is not divisible by trainer.grad_accum=3"),
    ("trainer.schedule=linear", "trainer.schedule must be one of ['constant', 'cosine', 'inverse_sqrt'], got 'linear'"),
    ("data.synthetic_items=1", "data.synthetic_items must be >= 2 and data.synthetic_users >= 1, got 1 and"),
  ],
)
def test_trainer_rejects_a_bad_value_naming_the_key(tmp_path, assignment, message):
  assert message in train_error(tmp_path, assignment)


@pytest.mark.parametrize(
  "assignment, message",
  [
    ("model.dim=0", "building sasrec from its config failed (ZeroDivisionError: "),
    ("model.num_heads=0", "settings that are 0: model.num_heads=0 (sizes such as dim, heads and layers must be > 0)"),
    ("model.dim=-4", "sasrec: integer model settings cannot be negative: model.dim=-4"),
  ],
)
def test_model_sizes_of_zero_or_below_are_config_errors(tmp_path, assignment, message):
  assert message in train_error(tmp_path, assignment)


def test_mesh_axes_must_fit_the_devices(tmp_path):
  assert "at most one axis may be -1, got data=-1 fsdp=-1" in train_error(tmp_path, "mesh.data=-1", "mesh.fsdp=-1")
  assert "data=16 x fsdp=1 x tensor=1 needs 16 devices; 8 available" in train_error(tmp_path, "mesh.data=16")
  assert "mesh: 8 devices do not divide into axes of product 3" in train_error(tmp_path, "mesh.data=-1", "mesh.fsdp=3")


def test_mesh_rules_name_unknown_axes_and_missing_rows():
  from genrec.train import sharding

  mesh = sharding.make_mesh(genrec.config.MeshConfig())
  with pytest.raises(ConfigError, match=r"mesh.rules: 'item' maps to unknown mesh axes \['model'\]"):
    sharding.logical_to_spec(("item",), (8,), mesh, (("item", "model"),))
  with pytest.raises(ConfigError, match=r"logical axis 'embed' has no row in mesh.rules \(rows: \['item'\]\)"):
    sharding.logical_to_spec(("embed",), (8,), mesh, (("item", "fsdp"),))


def test_best_metric_must_be_a_validation_metric(run, tmp_path):
  # Only eval_every differs from the shared `run`: its compiled step and evaluator come from the cache.
  err = train_error(tmp_path, "trainer.best_metric=auc", "trainer.eval_every=1")
  assert "trainer.best_metric='auc' is not a validation metric; choose from [" in err and "'ndcg@10'" in err


def test_candidates_other_than_all_minus_seen_need_a_score_method():
  from genrec.train.evaluate import make_eval_step

  step = make_eval_step(EvalConfig(candidates="all"))
  with pytest.raises(ConfigError, match=r"SimpleNamespace has no score\(\); only eval.candidates='all_minus_seen'"):
    step(types.SimpleNamespace(), {"target": np.zeros(2, np.int32)}, None)


@pytest.mark.parametrize(
  "cfg, message",
  [
    (dict(attention="blocked", block_size=0), "model.block_size must be >= 1 for blocked attention, got 0"),
    (
      dict(loss="sampled_softmax", num_negatives=0),
      r"model: sampled_softmax needs num_negatives >= 1 and "
      r"temperature > 0 \(got 0, 0.05\)",
    ),
  ],
)
def test_hstu_config_values(cfg, message):
  from genrec.models.hstu import HSTUConfig

  with pytest.raises(ConfigError, match=message):
    HSTUConfig(**cfg)


def test_registering_a_taken_model_name():
  from genrec.models.sasrec import SASRecConfig

  class Impostor:
    pass

  with pytest.raises(ValueError, match=r"model name 'sasrec' is already registered to genrec.models.sasrec.SASRec"):
    registry.register("sasrec", SASRecConfig)(Impostor)
  assert registry.model_class("sasrec").__name__ == "SASRec"


# -- command line and launch ---------------------------------------------------------------------------------
def test_local_devices_must_not_be_negative(tmp_path):
  assert train_error(tmp_path, flags=("--local-devices", "-1")) == (
    "--local-devices must be >= 0 (0 = the host's own devices), got -1"
  )


def test_launch_env_var_must_be_an_integer(tmp_path, monkeypatch):
  monkeypatch.setenv("GENREC_NUM_PROCESSES", "two")
  assert train_error(tmp_path) == "GENREC_NUM_PROCESSES must be an integer, got 'two'"


def test_datasets_prepare_needs_a_name():
  assert cli_error("datasets", "prepare") == "datasets prepare needs a NAME: one of ml-100k, ml-1m, ml-20m"


@pytest.mark.parametrize(
  "setting, message",
  [
    ("trainer.eval_every=0", "trainer.eval_every must be >= 1, got 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be >= 1, got 0"),
    ("trainer.steps=-1", "trainer.steps must be >= 0, got -1"),
    ("data.max_len=0", "data.max_len must be >= 1, got 0"),
    ("eval.ks=0", "eval.ks must be cutoffs >= 1 (e.g. 5,10), got [0]"),
    ("trainer.schedule=linear", "trainer.schedule must be one of"),
  ],
)
def test_nonpositive_settings_fail_before_any_folder_is_made(tmp_path, setting, message):
  code, _, err = runs.genrec_cli("train", "sasrec:tiny", "--workdir", tmp_path / "run", "--set", setting)
  assert code == 2 and message in err, err
  assert not (tmp_path / "run").exists()


def test_export_ids_of_a_run_without_semantic_ids(run):
  err = cli_error("export-ids", run["dir"])
  assert err == (
    f"{run['dir']} is a sasrec run: it has no semantic IDs (train a tokenizer such as rqvae or "
    "rqkmeans, or a generative retriever such as tiger)"
  )


def test_export_embeddings_of_a_run_without_them(run, tmp_path):
  assert (
    cli_error("export-embeddings", run["dir"], "--out", tmp_path / "e.txt")
    == f"--out must end in .npy, got {tmp_path / 'e.txt'}"
  )
  assert "is a sasrec run: it has no item embeddings to export" in cli_error("export-embeddings", run["dir"])
  assert not list(tmp_path.iterdir())


def test_export_ids_checks_the_table_and_the_file_type(run, tmp_path):
  from genrec.families import semantic_ids

  workdir = runs.copy_run(run, tmp_path / "run")
  cfg = genrec.configs.get("rqkmeans:tiny")
  semantic_ids.write_semantic_ids(workdir, np.zeros((11, 2), np.int32), {}, cfg)
  assert cli_error("export-ids", workdir) == "the semantic-ID table has 10 items but synthetic has 64"
  semantic_ids.write_semantic_ids(workdir, np.zeros((65, 2), np.int32), {}, cfg)
  assert (
    cli_error("export-ids", workdir, "--out", tmp_path / "ids.txt")
    == f"--out must end in .csv or .json, got {tmp_path / 'ids.txt'}"
  )


# -- checkpoints and runs ------------------------------------------------------------------------------------
def test_load_arguments(run):
  with pytest.raises(ValueError, match="which must be 'best' or 'latest', got 'first'"):
    genrec.load(run["dir"], which="first")
  with pytest.raises(CheckpointError, match=r"no checkpoint at step 999 in .*/checkpoints$"):
    genrec.load(run["dir"], which="latest", step=999)


def _damaged_copy(run, tmp_path) -> tuple[Path, Path]:
  """A copy of the run and its best checkpoint's step folder."""
  workdir = runs.copy_run(run, tmp_path / "run")
  (step_dir,) = [p for p in (workdir / "best").iterdir() if p.name.isdigit()]
  return workdir, step_dir


def test_unreadable_manifest_and_missing_file(run, tmp_path):
  workdir, step_dir = _damaged_copy(run, tmp_path)
  step = step_dir.name
  (step_dir / MANIFEST).write_text("{")
  with pytest.raises(
    CheckpointError, match=f"checkpoint step {step}: its manifest .*/best/{step}/{MANIFEST} is unreadable"
  ):
    genrec.load(workdir)
  workdir, step_dir = _damaged_copy(run, tmp_path / "again")
  (step_dir / "meta" / "metadata").unlink()
  assert f"checkpoint step {step}: file {step_dir / 'meta' / 'metadata'} is missing" in cli_error("eval", workdir)


@pytest.mark.parametrize(
  "metadata, message",
  [
    ("{not json", "cannot read .*/meta/metadata: Expecting property name"),
    (json.dumps({"step": 1}), "checkpoint metadata has no config; not written by genrec train"),
  ],
)
def test_checkpoint_metadata_that_is_not_genrec(run, tmp_path, metadata, message):
  workdir, step_dir = _damaged_copy(run, tmp_path)
  (step_dir / "meta" / "metadata").write_text(metadata)
  write_manifest(step_dir)  # else reported as a modified file
  with pytest.raises(CheckpointError, match=message):
    genrec.load(workdir)


def test_resume_with_every_checkpoint_damaged_says_fresh(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  for manifest in (workdir / "checkpoints").glob(f"*/{MANIFEST}"):
    manifest.write_text("{")
  err = cli_error("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false")
  assert err.startswith(f"no readable checkpoint in {workdir / 'checkpoints'}: checkpoint step 60: its manifest")
  assert "checkpoint step 30: its manifest" in err and err.endswith(
    "(if no other genrec train is using this workdir, pass --fresh to delete it and start over)"
  )


def test_warm_start_parameters_that_do_not_fit(run):
  from genrec.train.warm_start import transfer

  placed = genrec.load(run["dir"]).placed
  flat = dict(nnx.to_flat_state(placed.params))
  raw = ["[PAD]"] + [f"i{i}" for i in range(64)]
  args = (placed.params, placed.param_shardings, raw, raw, "RUN")
  with pytest.raises(ConfigError, match="--init-from RUN: it has no parameter "):
    transfer({}, *args)
  emb = next(p for p in flat if "item_emb" in p)
  with pytest.raises(
    ConfigError,
    match=r"parameter item_emb/embedding has shape \(128, 16\), this model needs "
    r"\(128, 32\); only the item axis may differ",
  ):
    transfer({**flat, emb: nnx.Param(np.zeros((128, 16), np.float32))}, *args)
  other = next(p for p, v in flat.items() if v.get_value().ndim == 1)
  with pytest.raises(ConfigError, match=r"has shape \(3,\), this model needs \(32,\)$"):
    transfer({**flat, other: nnx.Param(np.zeros(3, np.float32))}, *args)


# -- data ----------------------------------------------------------------------------------------------------
def test_atomic_file_with_an_empty_header_or_bad_encoding(tmp_path):
  from genrec.data import errors
  from genrec.data.atomic import read_atomic

  (tmp_path / "e.inter").write_text("\n1\t2\n")
  with pytest.raises(errors.HeaderError, match=r"e.inter line 1: empty header; expected tab-separated name:type"):
    read_atomic(tmp_path, "e")
  (tmp_path / "b.inter").write_bytes(b"user_id:token\titem_id:token\n1\t2\n1\t\xff\n")
  with pytest.raises(errors.BadValueError, match=r"b.inter line 3: not valid UTF-8 \(invalid start byte\)"):
    read_atomic(tmp_path, "b")


def test_atomic_dataset_spec_without_a_name(tmp_path):
  assert (
    train_error(tmp_path, "data.dataset=atomic:")
    == "data.dataset='atomic:': expected 'atomic:DIR/NAME' (files DIR/NAME.inter, .item, .user)"
  )


def test_item_embedding_and_text_settings():
  from genrec.data import load_dataset
  from genrec.families.content import sources

  data = load_dataset(DataConfig(dataset="synthetic"))
  with pytest.raises(ConfigError, match="data.item_embeddings must be 'text:minilm', .*got 'glove'"):
    sources.item_embeddings(data, DataConfig(dataset="synthetic", item_embeddings="glove"))
  with pytest.raises(ConfigError, match="data.item_embeddings='random:0': 'random:D' needs a width D >= 1"):
    sources.item_embeddings(data, DataConfig(dataset="synthetic", item_embeddings="random:0"))
  with pytest.raises(ConfigError, match="data.empty_item_text must be 'error' or 'placeholder', got 'skip'"):
    sources.item_texts(data, "skip")


# -- Hugging Face import -------------------------------------------------------------------------------------
def test_hf_folder_config_and_weights_errors(tmp_path):
  from genrec.models.text.bert import BertConfig
  from genrec.models.text.hf_import import load_bert, load_config

  with pytest.raises(hf.CheckpointError, match=f"model folder {tmp_path / 'no'} does not exist"):
    load_bert(tmp_path / "no" / "such")
  with pytest.raises(
    hf.CheckpointError,
    match=f"no model.safetensors in {tmp_path} \\(the weights\\); the folder "
    r"holds \[\]",
  ):
    load_bert(tmp_path / "typo")
  (tmp_path / "config.json").write_text("{")
  with pytest.raises(hf.CheckpointError, match=r"config.json is not valid JSON: Expecting property name"):
    load_config(tmp_path)
  (tmp_path / "model.safetensors").write_bytes(b"\x80\x02 pickled?")
  with pytest.raises(hf.CheckpointError, match=r"cannot read .*model.safetensors as safetensors"):
    load_bert(tmp_path, config=BertConfig())


BERT = dict(model_type="bert", vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(model_type="gpt2"), "config.json describes a 'gpt2' model; only BERT-architecture encoders"),
    (dict(model_type="roberta"), "model_type 'roberta': RoBERTa offsets positions by pad_token_id"),
    (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key': only 'absolute'"),
    (dict(vocab_size=None), r"config.json lacks \['vocab_size'\]; these fix the encoder's shape"),
  ],
)
def test_bert_config_json_that_cannot_be_imported(tmp_path, change, message):
  from genrec.models.text.hf_import import load_config

  hf_cfg = {k: v for k, v in {**BERT, **change}.items() if v is not None}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(ValueError, match=message):
    load_config(tmp_path)


LLAMA = dict(
  model_type="llama", vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
)


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(hidden_act="gelu"), "hidden_act 'gelu': only 'silu' \\(SwiGLU\\) is supported"),
    (dict(model_type="qwen2", use_sliding_window=True), "use_sliding_window=true: sliding-window attention"),
    (dict(intermediate_size=None), r"lacks \['intermediate_size'\]; these fix the llama model's shape"),
  ],
)
def test_llm_config_json_that_cannot_be_imported(tmp_path, change, message):
  from genrec.models.llm.hf_import import load_config

  hf_cfg = {k: v for k, v in {**LLAMA, **change}.items() if v is not None}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(hf.CheckpointError, match=f"{tmp_path / 'config.json'}: .*{message}"):
    load_config(tmp_path)


def test_llm_index_without_weight_map(tmp_path):
  from genrec.models.llm.hf_import import checkpoint_files

  (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
  with pytest.raises(hf.CheckpointError, match=r"index.json is not a safetensors index \(no weight_map\)"):
    checkpoint_files(tmp_path)


# -- CF artifacts and images ---------------------------------------------------------------------------------
def test_artifact_of_another_format(tmp_path):
  (tmp_path / "artifacts").mkdir()
  (tmp_path / "artifacts" / "cf.json").write_text(json.dumps({"format": "other", "model": "mf"}))
  data = types.SimpleNamespace(name="toy", num_users=2, num_items=1)
  with pytest.raises(CFArtifactError, match=r"cf.json: not a genrec-artifact-1 file \(format 'other'\)"):
    load_cf_artifact(tmp_path, data)


def test_image_settings():
  from genrec.data.images import ImageConfig

  with pytest.raises(ValueError, match=r"need 1 <= image_size <= resize_shortest, got 224 and 200"):
    ImageConfig(image_size=224, resize_shortest=200)
  with pytest.raises(ValueError, match=r"mean and std need 3 values each, std > 0"):
    ImageConfig(std=(0.5, 0.0, 0.5))
  with pytest.raises(ValueError, match=r"crop_size \{'height': 224, 'width': 200\} is not square"):
    ImageConfig.from_hf_preprocessor({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 200}})
