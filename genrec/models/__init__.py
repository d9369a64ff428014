"""Models: one module (or small package) per model, each registering itself on import (`genrec.registry`).

Importing this package imports no model; `genrec.registry` finds a model by its name when it is asked for.
"""

from genrec.registry import list_models, register

__all__ = ["list_models", "register"]
