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


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def stage_cache(tmp_path_factory):
  """A GENREC_CACHE of the requesting module's own: dependency stages (TIGER's tokenizer, CoLLM's MF, ...) train
  into it once per module and never touch the user's cache."""
  mp = pytest.MonkeyPatch()
  root = tmp_path_factory.mktemp("stage_cache")
  mp.setenv("GENREC_CACHE", str(root))
  yield root
  mp.undo()
