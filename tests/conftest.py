"""Test-wide JAX settings: 8 simulated CPU devices and strict numerics, set before any JAX op."""
import os
import sys

# Shared helpers (fixtures_runs.py, extension/) import by name; pytest's importlib mode does not add tests/.
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/genrec/jax-test-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
