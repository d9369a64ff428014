"""Named presets, one module per model: `get("sasrec:ml100k")` returns an ExperimentConfig.

A preset is a plain function in `genrec/configs/<model>.py` whose name is the preset's name. Models
registered outside genrec may ship presets by exposing a `PRESETS` dict {name: function} on their module.
"""
from __future__ import annotations

import importlib
import sys

from genrec.config import ConfigError, ExperimentConfig
from genrec.models import registry

_MODULES = {"sasrec": "genrec.configs.sasrec", "hstu": "genrec.configs.hstu",
            "bert4rec": "genrec.configs.bert4rec", "rqvae": "genrec.configs.rqvae",
            "rqkmeans": "genrec.configs.rqkmeans", "tiger": "genrec.configs.tiger",
            "mf": "genrec.configs.mf", "mmenc": "genrec.configs.mmenc", "tallrec": "genrec.configs.tallrec",
            "collm": "genrec.configs.collm", "llara": "genrec.configs.llara",
            "contentrec": "genrec.configs.contentrec"}


def _presets(model: str) -> dict:
  if model in _MODULES:
    return importlib.import_module(_MODULES[model]).PRESETS
  module = sys.modules.get(registry.model_class(model).__module__)
  return getattr(module, "PRESETS", {})


def get(spec: str) -> ExperimentConfig:
  """"model:preset" (or just "model" for its "default" preset) → ExperimentConfig."""
  model, _, preset = spec.partition(":")
  presets = _presets(model)
  preset = preset or "default"
  if preset not in presets:
    raise ConfigError(f"model {model!r} has no preset {preset!r}; presets: {sorted(presets)}")
  cfg = presets[preset]()
  if not isinstance(cfg, ExperimentConfig):
    raise ConfigError(f"preset {spec!r} returned {type(cfg).__name__}, not an ExperimentConfig")
  return cfg


def list_configs() -> list[str]:
  return sorted(f"{m}:{p}" for m in registry.list_models() for p in _presets(m))
