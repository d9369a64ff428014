"""The model registry: a string key → (model class, config class).

A model registers itself with `@register("name", NameConfig)` when its module is imported. Nothing keeps a list
of the built-in models: a name that is not registered yet is looked for as the module `genrec.models.NAME`, then
in every module of the `genrec.models` package; models outside genrec register from a module named by
`--import`, or through the `genrec.models` entry-point group. This module imports neither jax nor any model.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib import metadata

from genrec.errors import UnknownModelError

__all__ = ["UnknownModelError", "config_class", "import_module", "list_models", "model_class", "register"]

BUILTIN = "genrec.models"

_MODELS: dict[str, tuple[type, type]] = {}
_SCANNED: set[str] = set()  # packages whose every module has been imported


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


def import_all(package: str) -> None:
  """Imports every module below `package` (once per process), so that the decorators in them run."""
  if package in _SCANNED:
    return
  root = importlib.import_module(package)
  for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
    importlib.import_module(info.name)
  _SCANNED.add(package)


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
  if name not in _MODELS and name.isidentifier() and importlib.util.find_spec(f"{BUILTIN}.{name}") is not None:
    importlib.import_module(f"{BUILTIN}.{name}")  # the usual case: genrec/models/NAME.py
  if name not in _MODELS:
    import_all(BUILTIN)  # models in sub-packages or sharing a module
  if name not in _MODELS:
    _load_entry_points()
  if name not in _MODELS:
    raise UnknownModelError(
      f"unknown model {name!r}; registered models: {sorted(_MODELS)} "
      "(a model defined outside genrec needs --import MODULE or a 'genrec.models' entry point)"
    )
  return _MODELS[name]


def model_class(name: str) -> type:
  return _lookup(name)[0]


def config_class(name: str) -> type:
  return _lookup(name)[1]


def list_models() -> list[str]:
  import_all(BUILTIN)
  _load_entry_points()
  return sorted(_MODELS)
