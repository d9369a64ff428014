"""Issue 18: inputs that used to give silently wrong results, late or unclear errors. Each test makes the mistake
and checks the one-line error (or the now correct result); docs/errors.md names the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
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
  cfg = genrec.configs.from_json(json.dumps(partial))
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
    genrec.configs.from_json(json.dumps(partial | {"preset": "huge"}))
  with pytest.raises(ConfigError, match="names preset 'tiny'; read it with genrec.configs.from_json"):
    from_json(json.dumps(partial | {"preset": "tiny"}))  # genrec.config alone does not know the presets


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


# -- atomic files ----------------------------------------------------------------------------------------------
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def atomic(tmp_path, body: str, header: str = HEADER, *, raw_bytes: bytes | None = None):
  path = tmp_path / "d.inter"
  if raw_bytes is not None:
    path.write_bytes(raw_bytes)
  else:
    path.write_text(header + body, encoding="utf-8")
  return path


def test_fractional_timestamps_order_events_as_written(tmp_path):
  from genrec.config import DataConfig
  from genrec.data import prepare, read_atomic

  # Cut to whole seconds these three were one tie, kept in file order a, b, c.
  atomic(tmp_path, "u\ta\t100.7\nu\tb\t100.2\nu\tc\t100.5\nu\td\t99\nv\ta\t5\nv\tb\t6\nv\tc\t7\n")
  raw = read_atomic(tmp_path, "d")
  assert raw.inter["timestamp"].dtype == np.float64
  assert raw.inter["timestamp"].tolist()[:3] == [100.7, 100.2, 100.5]
  data = prepare(raw, DataConfig())
  u = data.user_index("u")
  assert [data.item_raw[i] for i in data.sequences[u]] == ["d", "b", "c", "a"]
  assert data.timestamps[u].tolist() == [99.0, 100.2, 100.5, 100.7]
  atomic(tmp_path, "u\ta\t100\nu\tb\t101.0\n")
  assert read_atomic(tmp_path, "d").inter["timestamp"].dtype == np.int64  # whole numbers stay exact integers


@pytest.mark.parametrize("value", ["1e25", "-1e17", "9007199254740994"])
def test_a_timestamp_out_of_range_names_the_file_and_line(tmp_path, value):
  from genrec.data import read_atomic
  from genrec.data.errors import BadValueError

  path = atomic(tmp_path, f"u\ta\t1\nu\tb\t{value}\n")
  with pytest.raises(BadValueError) as e:
    read_atomic(tmp_path, "d")
  assert str(e.value).startswith(f"{path} line 3: column 'timestamp' holds ")
  assert "outside the supported range of +-2**53 (9007199254740992)" in str(e.value)


def test_duplicate_rows_are_counted_and_warned_about_once(tmp_path):
  from genrec.config import DataConfig
  from genrec.data import prepare, read_atomic

  atomic(tmp_path, "u\ta\t1\nu\tb\t2\nu\ta\t1\nu\tc\t3\nu\ta\t1\nu\ta\t4\nv\ta\t1\nv\tb\t2\nv\tc\t3\n")
  with pytest.warns(UserWarning) as caught:
    data = prepare(read_atomic(tmp_path, "d"), DataConfig())
  (warning,) = caught
  assert str(warning.message).startswith(
    "d.inter: 2 interaction(s) repeat an earlier row's user_id, item_id and timestamp (the first at line 4)"
  )
  assert data.stats["interactions_duplicate"] == 2
  u = data.user_index("u")
  assert [data.item_raw[i] for i in data.sequences[u]] == ["a", "a", "a", "b", "c", "a"]  # kept, in file order
  atomic(tmp_path, "u\ta\t1\nu\tb\t2\nu\tc\t3\n")
  assert prepare(read_atomic(tmp_path, "d"), DataConfig()).stats["interactions_duplicate"] == 0


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_ids_declared_float_are_refused(tmp_path, column):
  from genrec.data import read_atomic
  from genrec.data.errors import HeaderError

  path = atomic(tmp_path, "1\t2\t3\n", header=HEADER.replace(f"{column}:token", f"{column}:float"))
  with pytest.raises(HeaderError) as e:
    read_atomic(tmp_path, "d")
  assert str(e.value).startswith(
    f"{path} line 1: column '{column}' is declared float, but ids are text: declare it '{column}:token'"
  )


@pytest.mark.parametrize(
  "header, body, message",
  [
    (
      "user_id:token,item_id:token,timestamp:float\n",
      "u,a,1\n",
      "line 1: the header is one field, 'user_id:token,item_id:token,timestamp:float'; atomic files are "
      "tab-separated, and this one looks separated by ','",
    ),
    (
      "user_id:token item_id:token timestamp:float\n",
      "u a 1\n",
      "atomic files are tab-separated, and this one looks separated by ' '",
    ),
    (HEADER, "u\ta\t1\nu,b,2\n", "line 3: expected 3 tab-separated fields (user_id, item_id, timestamp), found 1: "),
    (HEADER, "u\ta\t1\nu b 2\n", "atomic files are tab-separated, and this line looks separated by ' '"),
    ("", "u\ta\t1\nu\tb\t2\n", "line 1: header field 1 'u' is not of the form name:type"),
    (
      HEADER,
      "u\ta\t1\nu\tb",
      "line 3: expected 3 tab-separated fields (user_id, item_id, timestamp), found 2: 'u\\tb'",
    ),
  ],
  ids=["comma-header", "space-header", "comma-line", "space-line", "no-header", "truncated-last-line"],
)
def test_files_that_are_not_tab_separated_or_are_cut_short_say_so(tmp_path, header, body, message):
  from genrec.data import read_atomic
  from genrec.data.errors import DataError

  atomic(tmp_path, body, header=header)
  with pytest.raises(DataError) as e:
    read_atomic(tmp_path, "d")
  assert message in str(e.value) and "\n" not in str(e.value)
  truncated = str(e.value).endswith("; the last line ends early: is the file truncated?")
  assert truncated == body.endswith("\tb")


def test_bom_crlf_bad_bytes_and_short_users(tmp_path):
  from genrec.config import DataConfig
  from genrec.data import prepare, read_atomic
  from genrec.data.errors import BadValueError

  body = "u\ta\t1\nu\tb\t2\nu\tc\t3\nshort\ta\t1\nshort\tb\t2\n"
  atomic(tmp_path, "", raw_bytes=("\ufeff" + HEADER + body).replace("\n", "\r\n").encode())
  raw = read_atomic(tmp_path, "d")  # a UTF-8 byte-order mark and CRLF line ends are accepted
  assert list(raw.inter) == ["_line", "user_id", "item_id", "timestamp"]
  assert raw.inter["item_id"].tolist() == ["a", "b", "c", "a", "b"] and raw.inter["timestamp"].tolist()[-1] == 2
  data = prepare(raw, DataConfig())  # users with fewer than data.min_user_interactions are dropped, counted
  assert data.user_raw == ["u"] and data.stats["users_dropped_short"] == 1
  assert data.stats["interactions_dropped_short"] == 2
  path = atomic(tmp_path, "", raw_bytes=(HEADER + "u\ta\t1\nu\t\xe9t\xe9\t2\n").encode("latin-1"))
  with pytest.raises(BadValueError, match=f"^{path} line 3: not valid UTF-8 .*; atomic files are UTF-8$"):
    read_atomic(tmp_path, "d")


# -- checkpoints and run folders -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


def _best(workdir):
  (step_dir,) = [p for p in (workdir / "best").iterdir() if p.name.isdigit()]
  return step_dir


def _edit_manifest(step_dir, edit):
  from genrec.train.checkpoint import MANIFEST

  manifest = json.loads((step_dir / MANIFEST).read_text())
  edit(manifest["files"])
  (step_dir / MANIFEST).write_text(json.dumps(manifest))


def test_manifest_entries_outside_the_checkpoint_are_refused_unread(run, tmp_path):
  from genrec.train.checkpoint import CheckpointError

  secret = tmp_path / "secret.txt"
  secret.write_text("x" * 1234)
  workdir = runs.copy_run(run, tmp_path / "run")
  step_dir = _best(workdir)
  escape = os.path.relpath(secret, step_dir)
  assert escape.startswith("../")
  for entry, size in [(escape, 1234), (escape, 7), (str(secret), 7), ("/etc/hostname", 1)]:
    _edit_manifest(step_dir, lambda files: files.update({entry: [size, "0" * 64]}))
    with pytest.raises(CheckpointError) as e:
      genrec.load(workdir)
    assert f"names {entry!r}, which is outside the checkpoint folder; refusing to read it" in str(e.value)
    assert "1234" not in str(e.value) and "bytes" not in str(e.value)  # nothing about the outside file is told
    _edit_manifest(step_dir, lambda files: files.pop(entry))
  assert genrec.load(workdir).step == run["results"]["best_step"]


def test_links_out_of_a_checkpoint_are_refused(run, tmp_path):
  from genrec.train.checkpoint import CheckpointError

  other = runs.copy_run(run, tmp_path / "other")
  workdir = runs.copy_run(run, tmp_path / "run")
  step_dir = _best(workdir)
  shutil.rmtree(step_dir / "state")
  (step_dir / "state").symlink_to(_best(other) / "state")  # the manifest's files all match: it is the same run
  with pytest.raises(CheckpointError, match=r"state is a link out of the checkpoint folder .*; refusing to read it"):
    genrec.load(workdir)
  shutil.rmtree(workdir / "checkpoints" / "60")
  (workdir / "checkpoints" / "60").symlink_to(other / "checkpoints" / "60")
  err = cli_error("eval", workdir, "--which", "latest")
  assert err == f"checkpoint step 60: {workdir / 'checkpoints' / '60'} is a link out of {workdir / 'checkpoints'}; " + (
    "refusing to read it"
  )


def test_a_checkpoint_without_a_manifest_needs_allow_unverified(run, tmp_path):
  from genrec.train.checkpoint import MANIFEST, CheckpointError

  workdir = runs.copy_run(run, tmp_path / "run")
  step_dir = _best(workdir)
  (step_dir / MANIFEST).unlink()
  with pytest.raises(CheckpointError, match=f"checkpoint step {step_dir.name} in .*/best has no manifest {MANIFEST}"):
    genrec.load(workdir)
  assert "--allow-unverified" in cli_error("eval", workdir)
  assert genrec.load(workdir, allow_unverified=True).step == int(step_dir.name)
  code, out, err = runs.genrec_cli("recommend", workdir, "--user", "u3", "--k", "2", "--allow-unverified", "--json")
  assert code == 0 and len(json.loads(out)) == 2, err


def test_non_finite_parameters_are_refused(run, tmp_path):
  import jax

  from genrec.train.checkpoint import Checkpointer, CheckpointError

  workdir = runs.copy_run(run, tmp_path / "run")
  loaded = genrec.load(workdir)
  params = jax.tree.map(lambda x: x * float("nan"), loaded.placed.params)
  best = Checkpointer(workdir / "best", max_to_keep=1)
  best.save(loaded.step, {"params": params, "other": loaded.placed.other}, loaded.meta)  # with a valid manifest
  best.close()
  with pytest.raises(CheckpointError, match=r"checkpoint step \d+ in .*/best: .* holds NaN or Inf values; the "):
    genrec.load(workdir)
  assert "holds NaN or Inf values" in cli_error("eval", workdir)


def test_a_damaged_unverified_checkpoint_fails_with_one_clean_line(run, tmp_path):
  from genrec.train.checkpoint import MANIFEST

  workdir = runs.copy_run(run, tmp_path / "run")
  step_dir = _best(workdir)
  (step_dir / MANIFEST).unlink()
  for path in (p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"):
    with open(path, "r+b") as f:
      f.truncate(path.stat().st_size // 2)
  env = {**os.environ, "PYTHONPATH": str(Path(genrec.__file__).parent.parent)}
  env.pop("GENREC_TRACEBACK", None)
  proc = subprocess.run(
    [sys.executable, "-m", "genrec.cli", "eval", str(workdir), "--allow-unverified"],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  (line,) = proc.stderr.strip().splitlines()  # no "Exception ignored", no "Event loop is closed" tracebacks
  assert line.startswith(f"genrec eval: error: checkpoint step {step_dir.name} in {workdir / 'best'} is damaged")


def test_a_run_config_cannot_steer_reads_outside_the_current_folder(run, tmp_path, monkeypatch):
  from genrec.train.checkpoint import write_manifest

  data = tmp_path / "data"
  data.mkdir()
  (data / "d.inter").write_text(HEADER + "u\ta\t1\nu\tb\t2\nu\tc\t3\nv\ta\t1\nv\tb\t2\nv\tc\t3\n")
  workdir = runs.copy_run(run, tmp_path / "run")
  for meta_file in workdir.glob("*/*/meta/metadata"):
    meta = json.loads(meta_file.read_text())
    meta["config"]["data"]["dataset"] = "atomic:../../../../etc/passwd"
    meta_file.write_text(json.dumps(meta))
    write_manifest(meta_file.parent.parent)
  monkeypatch.chdir(tmp_path / "run")
  err = cli_error("eval", workdir)
  assert err == (
    f"{workdir}: its config reads data.dataset='atomic:../../../../etc/passwd', outside the current folder; a run "
    "folder does not choose files outside it: to read them, name them yourself with --data "
    "atomic:../../../../etc/passwd (genrec.load(..., data=...))"
  )
  assert "outside the current folder" in cli_error("recommend", workdir, "--user", "u3")
  # Named by the user, the files are read.
  loaded = genrec.load(workdir, data=f"atomic:{data / 'd'}")
  assert loaded.dataset().user_raw == ["u", "v"]


# -- lost progress and late errors ------------------------------------------------------------------------------
class Killed(BaseException):
  """Stands in for SIGKILL: nothing after it runs, not even the loop's own clean-up of pending rows."""


def test_a_kill_right_after_a_checkpoint_keeps_its_log_row_and_resumed_times_add_up(tmp_path, monkeypatch):
  from genrec.train.checkpoint import Checkpointer, write_manifest

  save = Checkpointer.save

  def save_then_die(self, step, state, meta):
    save(self, step, state, meta)
    if self.directory.name == "checkpoints" and step == 30:
      raise Killed

  workdir = tmp_path / "w"
  argv = ("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false")
  monkeypatch.setattr(Checkpointer, "save", save_then_die)
  with pytest.raises(Killed):
    runs.genrec_cli(*argv)
  monkeypatch.setattr(Checkpointer, "save", save)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert (30, "train") in {(r["step"], r["split"]) for r in rows}  # written before checkpoint 30, not after 31

  meta_file = workdir / "checkpoints" / "30" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  assert meta["train_seconds"] > 0 and meta["seconds_to_best"] is not None
  meta["train_seconds"], meta["seconds_to_best"] = 1000.0, 900.0  # as if the first process had trained long
  meta_file.write_text(json.dumps(meta))
  write_manifest(meta_file.parent.parent)
  code, _, err = runs.genrec_cli(*argv)
  assert code == 0, err
  results = json.loads((workdir / "results.json").read_text())
  assert results["train_seconds"] >= 1000.0  # the total over both processes, not the last one's
  assert results["seconds_to_best"] == 900.0 or results["seconds_to_best"] >= 1000.0
  assert results["seconds_to_best"] <= results["train_seconds"]


def test_eval_cutoffs_larger_than_the_catalogue_fail_before_training(run, tmp_path):
  # sasrec:tiny's synthetic catalogue has 64 items.
  message = "eval.ks=[5, 100000]: cutoff 100000 is more than the 64 candidate items a case ranks (synthetic, "
  assert train_error(tmp_path, "eval.ks=5,100000").startswith(message)
  err = train_error(tmp_path, "eval.ks=[10]", "eval.candidates=sampled:5")
  assert err.startswith("eval.ks=[10]: cutoff 10 is more than the 6 candidate items a case ranks")
  assert "eval.ks must be cutoffs >= 1" in train_error(tmp_path, "eval.ks=0")
  assert cli_error("eval", run["dir"], "--set", "eval.ks=[65]").startswith(
    "eval.ks=[65]: cutoff 65 is more than the 64"
  )


@pytest.mark.parametrize(
  "k, message",
  [
    (2.0, "k must be a whole number of items, got 2.0"),
    ("3", "k must be a whole number of items, got '3'"),
    (None, "k must be a whole number of items, got None"),
    (True, "k must be a whole number of items, got True"),
    (0, "k must be between 1 and the "),
    (10**6, "k must be between 1 and the "),
  ],
)
def test_recommend_checks_k(run, k, message):
  loaded = genrec.load(run["dir"])
  with pytest.raises((TypeError, ValueError)) as e:
    loaded.recommend("u3", k=k)
  assert str(e.value).startswith(message)
  assert [r["item"] for r in loaded.recommend("u3", k=np.int64(2))] == [r["item"] for r in loaded.recommend("u3", 2)]
