"""Every shipped preset builds: its model is constructed abstractly (no FLOPs) on an 8-device mesh."""

import dataclasses
import types

import jax
import numpy as np
import pytest
from flax import nnx

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec.train import sharding
from genrec.train.state import construct, place


def resolved(spec):
  cfg = genrec.configs.get(spec)
  if hasattr(cfg.model, "resolve"):
    fake = types.SimpleNamespace(num_items=97, num_users=11, item_embeddings=np.zeros((98, 24), np.float32))
    cfg = dataclasses.replace(cfg, model=cfg.model.resolve(fake, cfg.data))
  return cfg


@pytest.mark.parametrize("spec", genrec.configs.list_configs())
def test_preset_builds_and_shards(spec):
  cfg = resolved(spec)
  assert config_lib.from_json(config_lib.to_json(cfg)) == cfg
  model = nnx.eval_shape(lambda: construct(cfg))
  params = nnx.state(model, nnx.Param)
  assert sum(x.size for x in jax.tree.leaves(params)) > 0
  mesh = sharding.make_mesh(config_lib.MeshConfig(data=2, fsdp=2, tensor=2))
  placed = place(cfg, mesh, init=False)
  for var in jax.tree.leaves(placed.params):
    assert var.sharding.mesh.shape == mesh.shape


def test_list_configs_names_every_model():
  names = {spec.split(":")[0] for spec in genrec.configs.list_configs()}
  assert "sasrec" in names and names <= set(genrec.list_models())
