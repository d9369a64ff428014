"""Issue 18: inputs that used to give silently wrong results, late or unclear errors. Each test makes the mistake
and checks the one-line error (or the now correct result); docs/errors.md names the tests."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec.configs
from genrec import cli
from genrec.config import ConfigError, from_json, override, to_dict, to_json


def cli_error(*argv) -> str:
  """The one-line message of `genrec ARGV`, which must fail with exit code 2 and no traceback."""
  with mock.patch.dict(os.environ):
    os.environ.pop("GENREC_TRACEBACK", None)
    code, _, err = runs.genrec_cli(*argv)
  assert code == 2 and "Traceback" not in err and "Exception ignored" not in err, err
  (line,) = [x for x in err.splitlines() if ": error: " in x]
  return line.split(": error: ", 1)[1]


def train_error(tmp_path, *sets, flags=()) -> str:
  message = cli_error(
    "train", "sasrec:tiny", "--workdir", tmp_path / "w", *flags, "--set", "trainer.progress=false", *sets
  )
  assert not (tmp_path / "w").exists(), "refused only after creating the workdir"
  return message


# -- --set ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["train", "sasrec:tiny", "--workdir", "w"], ["eval", "w"]])
def test_every_repeated_set_applies(command):
  args = cli._parser().parse_args([*command, "--set", "a=1", "b=2", "--set", "c=3", "--set", "d=4"])
  assert args.overrides == ["a=1", "b=2", "c=3", "d=4"]


def test_an_early_set_is_not_dropped_by_a_later_one(tmp_path):
  # Before the fix the second --set replaced the first: the typo went unnoticed and the preset trained.
  err = cli_error("train", "sasrec:tiny", "--workdir", tmp_path / "w", "--set", "trainer.stepz=3", "--set", "x.y=1")
  assert "trainer.stepz" in err
  err = train_error(tmp_path, "trainer.steps=3", flags=("--set", "trainer.learning_rate=-1"))
  assert "trainer.learning_rate=-1.0" in err


def test_set_values_are_json_or_python_literals():
  cfg = genrec.configs.get("sasrec:tiny")
  rules = override(cfg, ['mesh.rules=[["batch","data"],["item","tensor"]]']).mesh.rules
  assert rules == (("batch", "data"), ("item", "tensor"))
  assert override(cfg, ["mesh.rules=(('batch', 'data', 'fsdp'), ('kv',))"]).mesh.rules == (
    ("batch", "data", "fsdp"),
    ("kv",),
  )
  assert override(cfg, ["eval.ks=[5, 10]"]).eval.ks == (5, 10)
  assert override(cfg, ["eval.ks=5,10"]).eval.ks == (5, 10)
  assert override(cfg, ["eval.ks=7"]).eval.ks == (7,)
  assert override(cfg, ["eval.group_by=age,gender"]).eval.group_by == ("age", "gender")


@pytest.mark.parametrize(
  "assignment, message",
  [
    (
      "mesh.rules=[[1, 2]]",
      "--set mesh.rules=[[1, 2]]: expected a list [[str, ...], ...] (mesh.rules[0][0]: expected a string",
    ),
    ("eval.ks=five,ten", "--set eval.ks=five,ten: expected a list [int, ...] (JSON, or 1,2)"),
    ("eval.ks=[5, 1.5]", "--set eval.ks=[5, 1.5]: expected a list [int, ...] (eval.ks[1]: expected an integer"),
    ("trainer.learning_rate=fast", "--set trainer.learning_rate=fast: expected float"),
    ("trainer.steps=[3]", "--set trainer.steps=[3]: trainer.steps: expected an integer"),
  ],
)
def test_a_set_value_of_the_wrong_type_names_the_key_and_type(assignment, message):
  with pytest.raises(ConfigError) as e:
    override(genrec.configs.get("sasrec:tiny"), [assignment])
  assert str(e.value).startswith(message), str(e.value)


# -- values out of range ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "assignment, message",
  [
    ("trainer.learning_rate=-1", "trainer.learning_rate=-1.0 is out of range: must be a finite number > 0"),
    ("trainer.learning_rate=0", "trainer.learning_rate=0.0 is out of range: must be a finite number > 0"),
    ("trainer.learning_rate=nan", "trainer.learning_rate=nan is out of range"),
    ("model.dropout=1.5", "model.dropout=1.5 is out of range: a dropout rate must be in [0, 1)"),
    ("model.emb_dropout=1", "model.emb_dropout=1.0 is out of range: a dropout rate must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1 is out of range"),
    ("trainer.compute_dtype=float16", "trainer.compute_dtype='float16' is out of range: must be one of ['float32',"),
    ("trainer.compute_dtype=banana", "trainer.compute_dtype='banana' is out of range: must be one of"),
    ("trainer.warmup_steps=-10", "trainer.warmup_steps=-10 is out of range: must be >= 0"),
    ("trainer.patience=-1", "trainer.patience=-1 is out of range: must be >= 0"),
    ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints=0 is out of range: must be >= 1"),
    ("trainer.keep_checkpoints=-1", "trainer.keep_checkpoints=-1 is out of range: must be >= 1"),
  ],
)
def test_values_out_of_range_are_refused_before_any_folder(tmp_path, assignment, message):
  assert message in train_error(tmp_path, assignment)


def test_stop_at_below_one_and_a_workdir_that_is_a_file(tmp_path):
  assert train_error(tmp_path, flags=("--stop-at", "-1")) == "--stop-at must be a step >= 1, got -1"
  assert "--stop-at must be a step >= 1, got 0" == train_error(tmp_path, flags=("--stop-at", "0"))
  file = tmp_path / "notes.txt"
  file.write_text("not a folder")
  err = cli_error("train", "sasrec:tiny", "--workdir", file, "--set", "trainer.progress=false")
  assert err == f"--workdir {file} is a file, not a folder; give a folder (it is created)"
  assert file.read_text() == "not a folder"


# -- config files ----------------------------------------------------------------------------------------------
def test_a_config_file_missing_keys_is_filled_from_its_preset_or_refused(tmp_path):
  tiny = genrec.configs.get("sasrec:tiny")
  partial = {"model_name": "sasrec", "preset": "tiny", "trainer": {"learning_rate": 0.01}, "model": {"dim": 16}}
  cfg = from_json(json.dumps(partial))
  assert cfg.trainer.steps == tiny.trainer.steps == 60  # the preset's, not the dataclass default of 1000
  assert cfg.trainer.learning_rate == 0.01 and cfg.model.dim == 16 and cfg.model.num_layers == tiny.model.num_layers
  assert cfg.data == tiny.data
  assert from_json(to_json(tiny)) == tiny  # a complete file needs no preset
  complete = to_dict(tiny) | {"preset": "not-a-preset"}
  assert from_json(json.dumps(complete)).preset == "not-a-preset"

  del partial["preset"]
  with pytest.raises(ConfigError) as e:
    from_json(json.dumps(partial))
  assert str(e.value).startswith("config: data, trainer.steps, trainer.batch_size, trainer.grad_accum")
  assert "more missing" in str(e.value)
  assert 'missing and no preset named; give every key, or add "preset": NAME' in str(e.value)
  with pytest.raises(ConfigError, match=r"model 'sasrec' has no preset 'huge'; presets: \["):
    from_json(json.dumps(partial | {"preset": "huge"}))


def test_train_takes_a_config_file_and_names_it_in_errors(tmp_path):
  path = tmp_path / "exp.json"
  path.write_text(json.dumps({"model_name": "sasrec", "preset": "tiny", "trainer": {"stepz": 5}}))
  err = cli_error("train", path, "--workdir", tmp_path / "w")
  assert err.startswith(f"{path}: config.trainer: unknown key(s) ['stepz']; valid keys: [")
  path.write_text(json.dumps({"model_name": "sasrec", "trainer": {"steps": 5}}))
  assert "missing and no preset named" in cli_error("train", path, "--workdir", tmp_path / "w")
  assert cli_error("train", tmp_path / "nope.json", "--workdir", tmp_path / "w") == (
    f"config file {tmp_path / 'nope.json'} does not exist"
  )
  path.write_text(json.dumps({"model_name": "sasrec", "preset": "tiny", "trainer": {"patience": -1}}))
  assert "trainer.patience=-1 is out of range" in cli_error("train", path, "--workdir", tmp_path / "w")
  assert not (tmp_path / "w").exists()
