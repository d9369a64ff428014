"""The shape of the code: light modules import no jax, models and presets are found by name (no hand-kept lists)."""
import json
import os
import subprocess
import sys

import genrec
import genrec.configs
from genrec import registry

ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "JAX_PLATFORMS": "cpu",
       "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def python(code: str) -> dict:
  """Runs `code` in a fresh interpreter; it prints one JSON value, returned here."""
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_config_and_the_registry_import_without_jax():
  out = python("import json, sys\n"
               "import genrec.config, genrec.registry, genrec.errors, genrec.files\n"
               "cfg = genrec.config.from_dict(genrec.config.TrainerConfig, {'steps': 5})\n"
               "print(json.dumps({'jax': 'jax' in sys.modules, 'steps': cfg.steps}))")
  assert out == {"jax": False, "steps": 5}


def test_a_model_is_found_by_its_module_name():
  """`tiger` is genrec/models/tiger.py: asking for it imports that module, not the LLM family's."""
  out = python("import json, sys\n"
               "from genrec import registry\n"
               "cls = registry.model_class('tiger')\n"
               "print(json.dumps({'cls': cls.__module__, 'llm': 'genrec.models.llmrec' in sys.modules}))")
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
