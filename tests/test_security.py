"""Guards: nothing on a load path unpickles; a checkpoint's config is validated against the dataclass schema
before use; run-folder paths cannot escape the folder; writes are atomic."""

import ast
import json
import re
from pathlib import Path

import pytest

import fixtures_runs as runs
import genrec
from genrec.config import ConfigError
from genrec.files import PathEscapeError, atomic_write, inside
from genrec.train.checkpoint import write_manifest

PACKAGE = Path(genrec.__file__).parent


def _sources():
  return sorted(PACKAGE.rglob("*.py"))


def test_no_pickle_on_any_load_path():
  banned = re.compile(
    r"\b(import pickle|from pickle|cloudpickle|dill|joblib|torch\.load|pickle\.load|"
    r"allow_pickle\s*=\s*True|pd\.read_pickle)\b"
  )
  hits = [
    f"{p.relative_to(PACKAGE)}:{i}"
    for p in _sources()
    for i, line in enumerate(p.read_text().splitlines(), 1)
    if banned.search(line.split("#")[0])
  ]
  assert not hits, f"pickle-capable loads: {hits}"
  # Every np.load names allow_pickle=False explicitly (NumPy's default has changed before).
  for p in _sources():
    for node in ast.walk(ast.parse(p.read_text())):
      if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert kw.get("allow_pickle") == "False", f"{p.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize(
  "edit, message",
  [
    (lambda c: c["trainer"].update(steps="many"), "trainer.steps"),
    (lambda c: c["trainer"].update(evil="rm -rf"), "evil"),
    (lambda c: c["model"].update(dim=[1, 2]), "dim"),
  ],
)
def test_checkpoint_config_is_validated_before_use(tmp_path_factory, tmp_path, edit, message):
  workdir = runs.copy_run(runs.sasrec_run(tmp_path_factory), tmp_path / "run")
  for meta_file in workdir.glob("*/*/meta/metadata"):
    meta = json.loads(meta_file.read_text())
    edit(meta["config"])
    meta_file.write_text(json.dumps(meta))
    write_manifest(meta_file.parent.parent)  # a consistent edit: only the config check can catch it
  with pytest.raises(ConfigError, match=message):
    genrec.load(workdir)


def test_paths_cannot_escape_the_run_folder(tmp_path):
  run = tmp_path / "run"
  (run / "artifacts").mkdir(parents=True)
  outside = tmp_path / "secret.npy"
  outside.write_bytes(b"x")
  (run / "artifacts" / "table.npy").symlink_to(outside)
  with pytest.raises(PathEscapeError, match="outside the run folder"):
    inside(run, "artifacts/table.npy")
  with pytest.raises(PathEscapeError):
    inside(run, "../secret.npy")
  assert inside(run, "artifacts/other.npy") == run / "artifacts" / "other.npy"


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
  target = tmp_path / "results.json"
  atomic_write(target, '{"ok": 1}')

  def fail(f):
    f.write(b'{"half')
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    atomic_write(target, fail)
  assert json.loads(target.read_text()) == {"ok": 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left behind
