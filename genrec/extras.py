"""Optional dependencies, imported where they are used: a missing one is an ImportError that names the extra
to install (`pip install 'genrec[hf]'`), not a bare ModuleNotFoundError from deep inside a command."""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> (the distribution that provides it, the genrec extra that installs it)
EXTRAS = {
  "safetensors": ("safetensors", "hf"),
  "tokenizers": ("tokenizers", "hf"),
  "PIL": ("pillow", "hf"),
  "matplotlib": ("matplotlib", "plot"),
  "pyarrow": ("pyarrow", "parquet"),
  "gcsfs": ("gcsfs", "gcs"),
}


def need(module: str, purpose: str = "") -> ModuleType:
  """`importlib.import_module(module)`, or an ImportError saying which extra brings it."""
  top = module.split(".")[0]
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != top or top not in EXTRAS:
      raise
    dist, extra = EXTRAS[top]
    why = f" ({purpose})" if purpose else ""
    raise ImportError(
      f"{dist} is not installed{why}; it comes with genrec's [{extra}] extra: pip install 'genrec[{extra}]'"
    ) from e
