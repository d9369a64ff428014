"""One tiny SASRec run per test session, trained through the CLI and shared by test_cli.py and
test_bad_input.py. Tests that change a run work on a `copy_run` of it."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

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


def copy_run(run: dict, dest: Path) -> Path:
  shutil.copytree(run["dir"], dest)
  return dest
