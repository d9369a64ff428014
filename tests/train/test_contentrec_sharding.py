"""ContentRec's frozen content table is split over the mesh's item axis (mesh.tensor), and training on that mesh
gives the parameters of a purely data-parallel mesh."""

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import MeshConfig
from genrec.train import sharding


def _train(mesh_cfg, workdir):
  # 63 items: the table's 64 rows (padding row included) divide over the tensor axis
  cfg = config_lib.override(
    genrec.configs.get("contentrec:tiny"),
    ["trainer.progress=false", "trainer.eval_every=1000", "trainer.checkpoint_every=1000", "data.synthetic_items=63"],
  )
  trainer = pipeline.trainer(cfg, workdir, mesh=sharding.make_mesh(mesh_cfg, devices=jax.devices()), resume=False)
  trainer.run(stop_at=3)
  content = trainer.state["other"]["content"]
  params = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree.leaves_with_path(trainer.state["params"])}
  return getattr(content, "value", content), params


def test_content_table_is_item_sharded_and_training_matches_data_parallel(tmp_path):
  content, split = _train(MeshConfig(data=4, tensor=2), tmp_path / "a")
  assert content.sharding.spec == P("tensor", None)
  assert {s.data.shape for s in content.addressable_shards} == {(32, content.shape[1])}
  replicated, data_parallel = _train(MeshConfig(data=8), tmp_path / "b")
  assert replicated.sharding.spec == P(None, None)
  np.testing.assert_array_equal(np.asarray(content), np.asarray(replicated))
  assert set(split) == set(data_parallel)
  for name in split:
    np.testing.assert_allclose(split[name], data_parallel[name], rtol=2e-4, atol=2e-4, err_msg=name)
