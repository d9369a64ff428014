"""The shape of the code: light modules import no jax, models and presets are found by name (no hand-kept lists)."""

import json
import os
import subprocess
import sys

import genrec
import genrec.configs
from genrec import registry

ENV = {
  **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
  "JAX_PLATFORMS": "cpu",
  "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
}


def python(code: str) -> dict:
  """Runs `code` in a fresh interpreter; it prints one JSON value, returned here."""
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_config_and_the_registry_import_without_jax():
  out = python(
    "import json, sys\n"
    "import genrec.config, genrec.registry, genrec.errors, genrec.files\n"
    "cfg = genrec.config.from_dict(genrec.config.TrainerConfig, {'steps': 5})\n"
    "print(json.dumps({'jax': 'jax' in sys.modules, 'steps': cfg.steps}))"
  )
  assert out == {"jax": False, "steps": 5}


def test_a_model_is_found_by_its_module_name():
  """`tiger` is genrec/models/tiger.py: asking for it imports that module, not the LLM family's."""
  out = python(
    "import json, sys\n"
    "from genrec import registry\n"
    "cls = registry.model_class('tiger')\n"
    "print(json.dumps({'cls': cls.__module__, 'llm': 'genrec.models.llmrec' in sys.modules}))"
  )
  assert out == {"cls": "genrec.models.tiger", "llm": False}


def test_models_outside_a_module_of_their_name_are_found_by_scanning_the_package():
  assert registry.model_class("rqvae").__module__ == "genrec.models.semantic_ids.rqvae"
  assert registry.model_class("collm").__module__ == "genrec.models.llmrec"


def test_every_preset_module_belongs_to_a_registered_model_and_every_model_has_presets():
  import pkgutil

  modules = {m.name for m in pkgutil.iter_modules(genrec.configs.__path__)}
  builtin = {m for m in genrec.list_models() if registry.model_class(m).__module__.startswith("genrec.")}
  assert modules == builtin
  assert all(genrec.configs.get(f"{m}:tiny").model_name == m for m in builtin)


# ---- the import graph: no circle, arrows only point down the layers ------------------------------------------
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

PACKAGE = Path(genrec.__file__).parent


def _module_name(file: Path) -> str:
  return ".".join(file.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_module_name(f): f for f in PACKAGE.rglob("*.py")}


def imports_of(module: str) -> set[str]:
  """The genrec modules `module` imports anywhere in its body (function-level imports count: they run too)."""
  tree = ast.parse(MODULES[module].read_text())
  package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    else:
      continue
    out |= {n for n in names if n in MODULES and n != module}
  return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_import_graph_has_no_circle():
  index, low, stack, on, circles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in GRAPH[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        circles.append(sorted(component))

  for v in sorted(GRAPH):
    if v not in index:
      visit(v)
  assert circles == []


LAYERS = ["ground", "config", "data", "models", "configs", "train", "families", "pipeline", "serve", "api", "cli"]


def layer(module: str) -> str:
  if module in (
    "genrec.errors",
    "genrec.files",
    "genrec.registry",
    "genrec.artifacts",
    "genrec.locks",
    "genrec.hub",
    "genrec.extras",
    "genrec.expected",
    "genrec",
  ):
    return "ground"
  parts = module.split(".")
  return {
    "config": "config",
    "data": "data",
    "models": "models",
    "configs": "configs",
    "train": "train",
    "families": "families",
    "pipeline": "pipeline",
    "serve": "serve",
    "api": "api",
    "cli": "cli",
  }[parts[1]]


def test_arrows_only_point_down_the_layers():
  """DESIGN.md: models and data never import train; train never imports families, pipeline, api or cli; nothing
  imports cli. The package face (`genrec/__init__.py`) imports only the registry; its other names are lazy."""
  # the reader sees module-level and function-level imports (else an empty graph would pass)
  assert "genrec.train.trainer" in GRAPH["genrec.pipeline"] and "genrec.families.add_items" in GRAPH["genrec.api"]
  assert "genrec.registry" in GRAPH["genrec.config"]  # imported inside a function
  up = sorted(
    f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets if LAYERS.index(layer(t)) > LAYERS.index(layer(m))
  )
  assert up == []
  assert GRAPH["genrec"] == {"genrec.registry"}


def test_the_engine_names_no_model():
  """train/ reaches models only through the registry and the written contracts, never a model's module."""
  allowed = {"genrec.models.protocols", "genrec.models.common", "genrec.models"}
  named = sorted(
    f"{m} -> {t}"
    for m, targets in GRAPH.items()
    if layer(m) == "train"
    for t in targets
    if layer(t) == "models" and t not in allowed
  )
  assert named == []
