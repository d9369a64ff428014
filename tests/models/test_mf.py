"""MF through the pointwise task: numerics against a NumPy forward pass, learning on planted clusters through
the real Trainer, 1-device == 8-device, the CF artifact round trip and its errors, the results table."""

from __future__ import annotations

import json
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import mannwhitneyu

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import ConfigError, MeshConfig
from genrec.data import load_dataset
from genrec.data.pointwise import pointwise_data
from genrec.families.llm_cf.cf import CFArtifactError, load_cf_artifact, save_cf_artifact
from genrec.families.llm_cf.pointwise import make_predictor
from genrec.files import PathEscapeError
from genrec.models.mf import MF, MFConfig
from genrec.train import report, sharding


def tiny(*overrides):
  return config_lib.override(genrec.configs.get("mf:tiny"), ["trainer.progress=false", *overrides])


def mesh_of(n, **axes):
  return sharding.make_mesh(MeshConfig(**axes), devices=jax.devices()[:n])


def np_predict(params, user, item):
  """Independent float64 forward: sigmoid(<P_u, Q_i> + b_u + b_i + b)."""
  f = lambda var: np.asarray(jax.device_get(var[...]), np.float64)
  P, Q = f(params["user_emb"]["embedding"]), f(params["item_emb"]["embedding"])
  logit = np.einsum("bd,bd->b", P[user], Q[item]) + f(params["user_bias"])[user] + f(params["item_bias"])[item]
  return 1.0 / (1.0 + np.exp(-(logit + f(params["bias"]))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """mf:tiny trained once on the 8-device mesh (data=4, fsdp=2)."""
  workdir = tmp_path_factory.mktemp("mf_tiny")
  cfg = tiny("mesh.data=4", "mesh.fsdp=2")
  results = pipeline.trainer(cfg, workdir, resume=False).run()
  data = load_dataset(cfg.data)
  return workdir, cfg, results, data, pointwise_data(data, cfg.data)


def test_shapes_and_numerics_against_numpy():
  cfg = MFConfig(num_users=5, num_items=7, dim=4, l2=0.5)
  model = MF(cfg, rngs=nnx.Rngs(params=0))
  params = nnx.state(model, nnx.Param)
  params["user_bias"][...] = jnp.arange(5.0) / 10  # non-zero biases so they are checked
  params["item_bias"][...] = -jnp.arange(8.0) / 20
  params["bias"][...] = jnp.asarray(0.3)
  nnx.update(model, params)
  batch = {
    "user": np.array([0, 4, 2], np.int32),
    "item": np.array([1, 7, 3], np.int32),
    "label": np.array([1.0, 0.0, 1.0], np.float32),
    "history": np.zeros((3, 2), np.int32),
  }
  probs = model.predict(batch)
  assert probs.shape == (3,) and probs.dtype == jnp.float32
  expected = np_predict(params, batch["user"], batch["item"])
  np.testing.assert_allclose(probs, expected, rtol=1e-6)
  loss, metrics = model.loss(batch)
  bce = -np.mean(batch["label"] * np.log(expected) + (1 - batch["label"]) * np.log(1 - expected))
  P = np.asarray(params["user_emb"]["embedding"][...], np.float64)[batch["user"]]
  Q = np.asarray(params["item_emb"]["embedding"][...], np.float64)[batch["item"]]
  reg = np.mean((P**2).sum(1) + (Q**2).sum(1))
  assert float(metrics["bce"]) == pytest.approx(bce, rel=1e-5)
  assert float(loss) == pytest.approx(bce + 0.5 * reg, rel=1e-5)
  assert model.user_embeddings().shape == (5, 4) and model.item_embeddings().shape == (8, 4)


def test_resolve_sizes_from_data_and_refuses_a_mismatch():
  view = types.SimpleNamespace(name="toy", num_users=11, num_items=97)
  assert MFConfig().resolve(view, None) == MFConfig(num_users=11, num_items=97)
  with pytest.raises(ConfigError, match="model.num_items=50, but toy has 97"):
    MFConfig(num_items=50).resolve(view, None)


def test_learns_planted_clusters(trained):
  workdir, _, results, _, points = trained
  # Labels = (user cluster == item cluster) with 5% flips, 4 clusters: popularity gets AUC ~0.5, the Bayes
  # classifier ~0.92.
  assert results["test"]["auc"] > 0.85 and results["valid"]["auc"] > 0.85
  assert results["test"]["uauc"] > 0.8 and results["test"]["uauc_users"] > 50
  assert set(results["valid"]) == {"auc", "uauc", "uauc_users", "logloss"}
  assert results["protocol"]["task"] == "pointwise" and results["protocol"]["label"] == "rating > 3"
  assert results["protocol"]["examples"] == {"train": 4096, "valid": 512, "test": 512}
  # The reported test AUC from an independent forward pass and SciPy's Mann-Whitney U on the best checkpoint.
  run = genrec.load(workdir)
  test = points.split("test")
  probs = np_predict(run.placed.params, test["user"], test["item"])
  pos, neg = probs[test["label"] == 1], probs[test["label"] == 0]
  u = mannwhitneyu(pos, neg).statistic
  assert results["test"]["auc"] == pytest.approx(u / (len(pos) * len(neg)), abs=1e-5)


def test_one_device_equals_eight_devices(tmp_path, trained):
  workdir, cfg, _, _, points = trained
  arrays = points.split("valid")
  preds = []
  for mesh in (mesh_of(1), mesh_of(8, data=2, fsdp=2, tensor=2)):
    run = genrec.load(workdir, mesh=mesh)
    preds.append(make_predictor(run.placed, 64)(run.placed.params, run.placed.other, arrays))
  assert preds[0].shape == (512,)
  np.testing.assert_allclose(preds[0], preds[1], rtol=1e-6, atol=1e-7)
  # Training too: the same first steps on one device and on eight.
  one = pipeline.trainer(tiny(), tmp_path / "unused", mesh=mesh_of(1), resume=False)
  eight = pipeline.trainer(tiny(), tmp_path / "unused", mesh=mesh_of(8, data=4, fsdp=2), resume=False)
  losses = []
  for trainer in (one, eight):
    batch = trainer.train_data[0]
    placed_batch = {k: jax.make_array_from_process_local_data(trainer.batch_sharding, v) for k, v in batch.items()}
    out = []
    for _ in range(3):
      trainer.state, metrics = trainer._step(trainer.state, trainer.placed.rngs, placed_batch)
      out.append(float(metrics["loss"]))
    losses.append(out)
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_cf_artifact_round_trip(trained):
  workdir, _, results, data, points = trained
  assert results["cf_artifact"]["path"] == "artifacts/cf.json" and (workdir / "artifacts" / "cf.json").is_file()
  users, items, meta = load_cf_artifact(workdir, data)
  params = jax.device_get(genrec.load(workdir).placed.params)
  np.testing.assert_array_equal(users, params["user_emb"]["embedding"])
  np.testing.assert_array_equal(items, params["item_emb"]["embedding"])
  assert users.dtype == np.float32 and users.shape == (256, 16) and items.shape == (65, 16)
  assert meta == {"model": "mf", "num_users": 256, "num_items": 64, "dim": 16, "dataset": "synthetic"}
  assert load_cf_artifact(workdir, points)[2] == meta  # the pointwise view works too


def test_cf_artifact_errors(trained, tmp_path):
  workdir, *_ = trained
  other = types.SimpleNamespace(name="ml-100k", num_users=943, num_items=1682)
  with pytest.raises(CFArtifactError, match="covers 256 users and 64 items; ml-100k has 943 users and 1682"):
    load_cf_artifact(workdir, other)
  with pytest.raises(CFArtifactError, match="no readable CF artifact.*train a pointwise CF model such as mf"):
    load_cf_artifact(tmp_path, other)
  # A pickled object array is refused, not unpickled.
  bad = tmp_path / "bad" / "artifacts"
  shutil.copytree(workdir / "artifacts", bad)
  (users,) = bad.glob("cf.users.*.npy")
  np.save(users, np.array([{"x": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(CFArtifactError, match="cannot read cf.users"):
    load_cf_artifact(tmp_path / "bad", other)
  # An artifacts/ folder that links out of the run folder is refused.
  (tmp_path / "escape").mkdir()
  os.symlink(workdir / "artifacts", tmp_path / "escape" / "artifacts")
  with pytest.raises(PathEscapeError, match="outside the run folder"):
    load_cf_artifact(tmp_path / "escape", other)
  # Arrays that disagree with the meta they were written with.
  save_cf_artifact(tmp_path / "dim", np.zeros((256, 16)), np.zeros((65, 16)), model="mf", dataset="synthetic")
  record = json.loads((tmp_path / "dim" / "artifacts" / "cf.json").read_text())
  record["meta"]["dim"] = 8
  (tmp_path / "dim" / "artifacts" / "cf.json").write_text(json.dumps(record))
  with pytest.raises(CFArtifactError, match=r"users is float32 \(256, 16\), but its meta says float32 \(256, 8\)"):
    load_cf_artifact(tmp_path / "dim", other)


def test_results_table_is_pointwise(trained):
  _, _, results, _, _ = trained
  table = report.results_table(results)
  assert "| split | examples | AUC | UAUC | UAUC users | logloss |" in table
  assert f"| test | 512 | {results['test']['auc']:.4f} |" in table and "CF embeddings: artifacts/cf.json" in table


def test_recommend_on_a_pointwise_run_says_why_not(trained):
  workdir = trained[0]
  with pytest.raises(ValueError, match="mf is a pointwise model"):
    genrec.load(workdir).recommend("0", 5)
