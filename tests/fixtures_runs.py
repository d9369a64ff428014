"""One tiny SASRec run and one tiny TIGER run per test session, trained through the CLI and shared by the tests
that read a run (test_cli.py, test_bad_input.py, test_export.py, ...). Tests that change a run work on a
`copy_run` of it."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from genrec import cli

_CACHE: dict = {}


def genrec_cli(*argv) -> tuple[int, str, str]:
  """`genrec ARGV` in this process: (exit code, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main([str(a) for a in argv])
  return code, out.getvalue(), err.getvalue()


def sasrec_run(tmp_path_factory) -> dict:
  """{"dir", "stdout", "results" (results.json right after training)}; trained once per session."""
  if "run" not in _CACHE:
    workdir = tmp_path_factory.mktemp("sasrec_tiny")
    code, out, err = genrec_cli("train", "sasrec:tiny", "--workdir", workdir, "--set", "trainer.progress=false")
    assert code == 0, err
    _CACHE["run"] = {"dir": workdir, "stdout": out, "results": json.loads((workdir / "results.json").read_text())}
  return _CACHE["run"]


def tiger_run(tmp_path_factory) -> Path:
  """A tiger:tiny run folder (20 steps: a constrained beam search over trained codes, not a good model); its
  tokenizer stage trains into a cache of its own, and the checkpoint holds the code table, so loading it needs
  no cache."""
  if "tiger" not in _CACHE:
    workdir = tmp_path_factory.mktemp("tiger_tiny")
    steps = ("trainer.steps=20", "trainer.eval_every=20", "trainer.checkpoint_every=20")
    with pytest.MonkeyPatch.context() as mp:
      mp.setenv("GENREC_CACHE", str(tmp_path_factory.mktemp("tiger_stage_cache")))
      code, _, err = genrec_cli("train", "tiger:tiny", "--workdir", workdir, "--set", "trainer.progress=false", *steps)
    assert code == 0, err
    _CACHE["tiger"] = workdir
  return _CACHE["tiger"]


def copy_run(run: dict, dest: Path) -> Path:
  shutil.copytree(run["dir"], dest)
  return dest
