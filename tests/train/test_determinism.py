"""Every registered model's `tiny` preset: the same seed and config give bit-identical parameters on the same
mesh, and 1 device gives the 8-device parameters within float tolerance (a few optimizer steps each)."""

import jax
import numpy as np
import pytest

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import MeshConfig
from genrec.train import sharding

TINY = sorted(spec for spec in genrec.list_configs() if spec.endswith(":tiny"))
STEPS = 3
# Parameters whose gradient is exactly zero in exact arithmetic (a bias added before a softmax over the same
# axis: attention keys, fusion gate scores). Adam turns their rounding noise into +-lr steps, so they differ
# between reduction orders by design.
ZERO_GRADIENT = ("['k']['bias'].value", "['score']['bias'].value")


pytestmark = pytest.mark.usefixtures("stage_cache")  # dependency stages train into this module's own cache


def _params(spec, devices, workdir):
  cfg = config_lib.override(
    genrec.configs.get(spec),
    ["trainer.progress=false", "trainer.eval_every=1000", "trainer.checkpoint_every=1000", "trainer.log_every=1"],
  )
  mesh = sharding.make_mesh(MeshConfig(data=len(devices)), devices=devices)
  trainer = pipeline.trainer(cfg, workdir, mesh=mesh, resume=False)
  trainer.run(stop_at=min(STEPS, cfg.trainer.steps))
  leaves = jax.tree.leaves_with_path(trainer.state["params"])
  return {jax.tree_util.keystr(p): np.asarray(jax.device_get(x)) for p, x in leaves}, int(trainer.state["step"])


def test_every_tiny_preset_is_listed():
  from genrec import registry

  models = {spec.split(":")[0] for spec in TINY}
  builtin = {m for m in genrec.list_models() if registry.model_class(m).__module__.startswith("genrec.")}
  assert builtin <= models, f"built-in models without a tiny preset: {builtin - models}"


@pytest.mark.parametrize("spec", TINY)
def test_same_seed_same_parameters_and_one_device_matches_eight(spec, tmp_path):
  eight, step = _params(spec, jax.devices(), tmp_path / "a")
  again, _ = _params(spec, jax.devices(), tmp_path / "b")
  one, _ = _params(spec, jax.devices()[:1], tmp_path / "c")
  assert eight and set(eight) == set(again) == set(one)
  for name in eight:
    np.testing.assert_array_equal(again[name], eight[name], err_msg=f"{spec} {name}: same seed, same mesh")
    if name.endswith(ZERO_GRADIENT):
      continue
    np.testing.assert_allclose(
      one[name], eight[name], rtol=2e-4, atol=2e-5 * max(1, step), err_msg=f"{spec} {name}: 1 device vs 8"
    )
