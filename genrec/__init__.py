"""genrec: generative recommendation in JAX/Flax.

    run = genrec.load("runs/sasrec")        # model + params + config, from the run folder alone
    genrec.list_models(), genrec.list_configs()
"""
from genrec.api import Run, load
from genrec.configs import list_configs
from genrec.models.registry import list_models, register

__all__ = ["Run", "load", "list_configs", "list_models", "register"]
__version__ = "0.1.0"
