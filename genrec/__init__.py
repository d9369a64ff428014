"""genrec: generative recommendation in JAX/Flax.

    run = genrec.load("runs/sasrec")        # model + params + config, from the run folder alone
    genrec.list_models(), genrec.list_configs()

The package face is lazy: `import genrec.config` (or any light module) does not import jax; `genrec.load` and
the other names below import what they need on first use.
"""

from genrec.registry import list_models, register

__all__ = ["Run", "load", "list_configs", "list_models", "register"]
__version__ = "0.1.0"

_LAZY = {"Run": "genrec.api", "load": "genrec.api", "list_configs": "genrec.configs"}


def __getattr__(name: str):
  if name in _LAZY:
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'genrec' has no attribute {name!r}")
