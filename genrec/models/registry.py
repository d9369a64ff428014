"""The model registry: a string key → (model class, config class).

Models inside genrec register on import of `genrec.models`; models outside it register with the same
decorator from a module named by `--import`, or through the `genrec.models` entry-point group.
"""
from __future__ import annotations

import importlib
from importlib import metadata

_MODELS: dict[str, tuple[type, type]] = {}


class UnknownModelError(KeyError):
  def __str__(self):
    return self.args[0]


def register(name: str, config_cls: type):
  """Class decorator: `@register("sasrec", SASRecConfig)`."""

  def wrap(model_cls):
    prev = _MODELS.get(name)
    if prev is not None and prev[0].__qualname__ != model_cls.__qualname__:
      raise ValueError(f"model name {name!r} is already registered to {prev[0].__module__}.{prev[0].__qualname__}")
    _MODELS[name] = (model_cls, config_cls)
    model_cls.registry_name = name
    return model_cls

  return wrap


def _load_entry_points():
  """Imports every module in the `genrec.models` entry-point group (packages installed after start-up
  are found too: the group is read each time a name is missing)."""
  for ep in metadata.entry_points(group="genrec.models"):
    try:
      ep.load()
    except Exception as e:
      raise ImportError(f"entry point {ep.name!r} = {ep.value!r} in group 'genrec.models' failed to load: {e}") from e


def import_module(name: str):
  """Imports a user's module so its @register decorators run (`genrec train --import mypkg.mymodel`)."""
  try:
    return importlib.import_module(name)
  except ImportError as e:
    raise ImportError(f"--import {name}: {e}") from e


def _lookup(name: str) -> tuple[type, type]:
  import genrec.models  # noqa: F401  (built-in registrations)

  if name not in _MODELS:
    _load_entry_points()
  if name not in _MODELS:
    raise UnknownModelError(
        f"unknown model {name!r}; registered models: {sorted(_MODELS)} "
        "(a model defined outside genrec needs --import MODULE or a 'genrec.models' entry point)")
  return _MODELS[name]


def model_class(name: str) -> type:
  return _lookup(name)[0]


def config_class(name: str) -> type:
  return _lookup(name)[1]


def list_models() -> list[str]:
  import genrec.models  # noqa: F401

  _load_entry_points()
  return sorted(_MODELS)
