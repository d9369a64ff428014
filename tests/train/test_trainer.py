"""The trainer end to end on the synthetic dataset: learning, sharding invariance, checkpoints, resume."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec.config import ConfigError, MeshConfig
from genrec.data import load_dataset
from genrec.train import sharding
from genrec.train.trainer import Trainer


def tiny(*overrides):
  return config_lib.override(genrec.configs.get("sasrec:tiny"), ["trainer.progress=false", *overrides])


def mesh_of(n, **axes):
  return sharding.make_mesh(MeshConfig(**axes), devices=jax.devices()[:n])


def params_np(state):
  return jax.tree.map(np.asarray, jax.device_get(state["params"]))


def assert_trees_equal(a, b, exact=True):
  # Not exact: Adam divides by sqrt(v), so a parameter whose gradient is ~0 moves by +-lr on float noise
  # alone; atol sits at a fraction of the 3e-3 learning rate.
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3)


def losses(trainer, steps):
  out = []
  it = iter(trainer.train_data.to_iter_dataset())
  for _ in range(steps):
    local = next(it)
    batch = {k: jax.make_array_from_process_local_data(trainer.batch_sharding, v) for k, v in local.items()}
    trainer.state, metrics = trainer._step(trainer.state, trainer.placed.rngs, batch)
    out.append(float(metrics["loss"]))
  return np.array(out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The tiny preset trained once on the 8-device mesh (data=4, fsdp=2)."""
  workdir = tmp_path_factory.mktemp("tiny")
  cfg = tiny("mesh.data=4", "mesh.fsdp=2")
  results = Trainer(cfg, workdir, resume=False).run()
  return workdir, cfg, results


def test_learns_planted_structure(trained):
  _, _, results = trained
  # Next item follows a hidden cycle with p=0.9: a popularity ranker gets ndcg@10 ~ 0.15 on 64 items.
  assert results["test"]["ndcg@10"] > 0.6
  assert results["valid"]["recall@10"] > 0.7
  assert results["steps"] == 60 and results["best_step"] in (30, 60)
  assert set(results["protocol"]) >= {"split", "candidates", "ks", "dataset"}


def test_one_device_equals_eight_devices(tmp_path):
  cfg = tiny()
  one = Trainer(cfg, tmp_path / "unused", mesh=mesh_of(1), resume=False)
  eight = Trainer(cfg, tmp_path / "unused", mesh=mesh_of(8, data=4, fsdp=2), resume=False)
  assert eight.state["params"]["item_emb"]["embedding"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
  np.testing.assert_allclose(losses(one, 5), losses(eight, 5), rtol=1e-5)
  assert_trees_equal(params_np(one.state), params_np(eight.state), exact=False)


def test_load_restores_bit_exact_and_onto_other_meshes(trained):
  workdir, cfg, results = trained
  run = genrec.load(workdir)
  assert run.config == dataclasses.replace(run.config, model=run.config.model)  # frozen, typed
  assert run.config.model.num_items == 64 and run.config.model_name == "sasrec"
  assert run.step == results["best_step"]
  ref = params_np({"params": run.placed.params})
  for n, axes in ((1, {}), (8, {"data": 2, "fsdp": 4}), (8, {"data": 1, "fsdp": 2, "tensor": 4})):
    other = genrec.load(workdir, mesh=mesh_of(n, **axes))
    assert_trees_equal(ref, params_np({"params": other.placed.params}))
  recs = run.recommend(load_dataset(cfg.data).user_raw[3], k=5)
  assert len(recs) == 5 and len({r["item"] for r in recs}) == 5


def test_eval_from_checkpoint_matches_training_results(trained):
  from genrec.api import evaluate_run

  workdir, _, results = trained
  again = evaluate_run(genrec.load(workdir), write=False)
  for k in ("recall@10", "ndcg@10", "mrr@10"):
    assert again["test"][k] == pytest.approx(results["test"][k], abs=1e-6)


def test_resume_equals_uninterrupted(tmp_path):
  cfg = tiny("trainer.steps=6", "trainer.eval_every=3", "trainer.checkpoint_every=3")
  mesh = mesh_of(2, data=2)
  straight = Trainer(cfg, tmp_path / "a", mesh=mesh, resume=False)
  straight.run()
  assert Trainer(cfg, tmp_path / "b", mesh=mesh, resume=False).run(stop_at=3) is None
  resumed = Trainer(cfg, tmp_path / "b", mesh=mesh)
  assert int(resumed.state["step"]) == 3 and resumed.data_state == {"next_index": 3}
  resumed.run()
  assert_trees_equal(params_np(straight.state), params_np(resumed.state))
  assert_trees_equal(jax.device_get(straight.state["opt"]), jax.device_get(resumed.state["opt"]))


def test_resume_onto_other_meshes_continues_the_same_run(tmp_path):
  """Stopped on 8 devices, resumed on 4 (another axis split), finished on 8 again: the same losses and
  parameters as an uninterrupted 8-device run, up to float reduction order (the devices sum in another order)."""
  base = ["trainer.steps=6", "trainer.eval_every=2", "trainer.checkpoint_every=2", "trainer.log_every=1"]
  eight = ("mesh.data=4", "mesh.fsdp=2")
  straight = Trainer(tiny(*base, *eight), tmp_path / "a", mesh=mesh_of(8, data=4, fsdp=2), resume=False)
  straight.run()
  legs = [
    (8, {"data": 4, "fsdp": 2}, eight, 2),
    (4, {"data": 2, "tensor": 2}, ("mesh.data=2", "mesh.tensor=2"), 4),
    (8, {"data": 8}, ("mesh.data=8",), None),
  ]
  for n, axes, sets, stop in legs:
    trainer = Trainer(tiny(*base, *sets), tmp_path / "b", mesh=mesh_of(n, **axes))
    if stop != 2:
      assert trainer.data_state == {"next_index": 2 if n == 4 else 4}  # continues at the same global batch
    trainer.run(stop_at=stop)
  assert int(trainer.state["step"]) == 6
  assert_trees_equal(params_np(straight.state), params_np(trainer.state), exact=False)

  def train_losses(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r.get("split") == "train"}

  a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
  assert sorted(a) == sorted(b) == list(range(1, 7))
  np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=2e-5)
  assert json.loads((tmp_path / "b" / "config.json").read_text())["mesh"]["data"] == 8  # the config it ran with


def test_resume_refuses_a_different_config(tmp_path, trained):
  workdir, _, _ = trained
  with pytest.raises(ConfigError, match="different config.*model.dim"):
    Trainer(tiny("mesh.data=4", "mesh.fsdp=2", "model.dim=16"), workdir)


def test_grad_accumulation_matches_full_batch(tmp_path):
  base = tiny("model.dropout=0.0", "model.emb_dropout=0.0")
  mesh = mesh_of(1)
  full = Trainer(base, tmp_path / "unused", mesh=mesh, resume=False)
  accum = Trainer(config_lib.override(base, ["trainer.grad_accum=4"]), tmp_path / "unused", mesh=mesh, resume=False)
  np.testing.assert_allclose(losses(full, 3), losses(accum, 3), rtol=1e-5)
  assert_trees_equal(params_np(full.state), params_np(accum.state), exact=False)


def test_bfloat16_compute_learns(tmp_path):
  trainer = Trainer(tiny("trainer.compute_dtype=bfloat16"), tmp_path / "unused", mesh=mesh_of(1), resume=False)
  curve = losses(trainer, 25)
  assert curve[-5:].mean() < curve[:5].mean() - 0.5
  assert trainer.state["params"]["item_emb"]["embedding"].dtype == np.float32


def test_batch_size_must_divide_over_devices(tmp_path):
  with pytest.raises(ConfigError, match="divide over 8 data-parallel devices"):
    Trainer(tiny("trainer.batch_size=12"), tmp_path / "unused", mesh=mesh_of(8), resume=False)
