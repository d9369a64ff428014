"""Named presets: `get("sasrec:ml100k")` returns an ExperimentConfig.

A built-in model's presets are the module `genrec/configs/<model>.py`, found by the model's name: its `PRESETS`
dict {preset name: function returning an ExperimentConfig}. A model outside genrec registers its presets with
`register("mymodel", PRESETS)` in its own config module (the one named by `--import`), or keeps a `PRESETS` dict
in its model module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

from genrec import config as config_lib
from genrec import registry
from genrec.config import ConfigError, ExperimentConfig

_REGISTERED: dict[str, dict[str, Callable[[], ExperimentConfig]]] = {}


def register(model: str, presets: dict[str, Callable[[], ExperimentConfig]]) -> None:
  """Presets of a model defined outside genrec: {name: function returning an ExperimentConfig}."""
  _REGISTERED.setdefault(model, {}).update(presets)


def _presets(model: str) -> dict:
  if model in _REGISTERED:
    return _REGISTERED[model]
  if model.isidentifier() and importlib.util.find_spec(f"{__name__}.{model}") is not None:
    return importlib.import_module(f"{__name__}.{model}").PRESETS
  module = sys.modules.get(registry.model_class(model).__module__)  # may load entry points, which register
  return _REGISTERED.get(model) or getattr(module, "PRESETS", {})


def get(spec: str) -> ExperimentConfig:
  """ "model:preset" (or just "model" for its "default" preset) → ExperimentConfig."""
  model, _, preset = spec.partition(":")
  presets = _presets(model)
  preset = preset or "default"
  if preset not in presets:
    raise ConfigError(f"model {model!r} has no preset {preset!r}; presets: {sorted(presets)}")
  cfg = presets[preset]()
  if not isinstance(cfg, ExperimentConfig):
    raise ConfigError(f"preset {spec!r} returned {type(cfg).__name__}, not an ExperimentConfig")
  return cfg


def from_json(text: str) -> ExperimentConfig:
  """A config file (genrec.config.from_json) whose missing keys come from the preset it names."""
  return config_lib.from_json(text, presets=get)


def list_configs() -> list[str]:
  return sorted(f"{m}:{p}" for m in registry.list_models() for p in _presets(m))
