"""HSTU: shapes, causality, blocked == plain attention, time buckets, sampled softmax, learning, 1 == 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import genrec.configs
from genrec import config as config_lib
from genrec.config import ConfigError, MeshConfig
from genrec.models.hstu import HSTU, HSTUConfig, hstu_attention, time_bucket
from genrec.models.sequential import sampled_softmax_cross_entropy
from genrec.train import sharding
from genrec.train.trainer import Trainer

B, L, N = 3, 8, 20


def model_of(**kw):
  cfg = HSTUConfig(
    num_items=N, max_len=L, dim=16, num_layers=2, num_heads=2, qk_dim=8, v_dim=8, dropout=0.0, emb_dropout=0.0, **kw
  )
  return nnx.jit(lambda: HSTU(cfg, rngs=nnx.Rngs(params=0, dropout=1)))()  # one compile, not op by op


def train_batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, N + 1, (B, L + 1)).astype(np.int32)
  ids[0, :3] = 0  # a left-padded row
  times = np.cumsum(rng.integers(0, 10_000, (B, L + 1)), axis=1).astype(np.int32) * (ids > 0)
  return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "input_times": times[:, :-1], "target_times": times[:, 1:]}


def eval_batch(seed=0):
  tb = train_batch(seed)
  return {
    "history": tb["targets"],
    "history_times": tb["target_times"],
    "target_time": tb["target_times"][:, -1] + 5,
    "seen": tb["targets"],
    "target": tb["targets"][:, -1],
  }


def test_shapes_and_scores():
  model = model_of()
  loss, metrics = nnx.jit(lambda m, b: m.loss(b))(model, train_batch())
  assert loss.shape == () and np.isfinite(float(loss)) and float(metrics["tokens"]) == B * L - 2
  scores = nnx.jit(lambda m, b: m.score(b))(model, eval_batch())
  assert scores.shape == (B, N + 1) and bool(jnp.all(jnp.isneginf(scores[:, 0])))
  ids, _ = nnx.jit(lambda m, b: m.recommend(b, 5))(model, eval_batch())
  assert ids.shape == (B, 5)


def test_causal():
  model = model_of()
  tb = train_batch()
  valid = jnp.asarray(tb["inputs"] > 0)
  x = jax.random.normal(jax.random.key(0), (B, L, 16))
  t = 4
  out_t = lambda m, x: m.stack(x, valid, tb["target_times"], tb["input_times"])[:, t].sum()
  jac = nnx.jit(lambda m, x: jax.grad(lambda x: out_t(m, x))(x))(model, x)
  assert float(jnp.abs(jac[:, t + 1 :]).max()) == 0.0
  assert float(jnp.abs(jac[1:, : t + 1]).max()) > 0.0


def test_blocked_equals_plain_attention():
  k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
  q, k = jax.random.normal(k1, (2, 16, 2, 4)), jax.random.normal(k2, (2, 16, 2, 4))
  v = jax.random.normal(k3, (2, 16, 2, 5))
  valid = jnp.arange(16)[None, :] >= jnp.array([[0], [5]])
  bias = jax.random.normal(k4, (2, 16, 16))
  bias_fn = lambda idx: jnp.take(bias, idx, axis=2)
  plain = hstu_attention(q, k, v, valid, bias_fn)
  blocked = hstu_attention(q, k, v, valid, bias_fn, block_size=4)
  np.testing.assert_allclose(plain, blocked, rtol=1e-5, atol=1e-6)
  # the definition, by hand: SiLU(qk + bias) / L over allowed (causal, valid-key) pairs
  logits = np.einsum("blhk,bshk->bhls", q, k) + np.asarray(bias)[:, None]
  allowed = np.tril(np.ones((16, 16), bool))[None, None] & np.asarray(valid)[:, None, None, :]
  ref = np.einsum("bhls,bshv->blhv", np.where(allowed, logits / (1 + np.exp(-logits)) / 16, 0), v)
  np.testing.assert_allclose(plain, ref, rtol=1e-4, atol=1e-5)
  # whole model, loss and gradients
  plain_m, blocked_m = model_of(), model_of(attention="blocked", block_size=4)
  grad = nnx.jit(lambda m: nnx.value_and_grad(lambda m: m.loss(train_batch())[0])(m))
  (lp, gp), (lb, gb) = grad(plain_m), grad(blocked_m)
  np.testing.assert_allclose(lp, lb, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gb), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_time_bucket_hand_values():
  dt = jnp.array([0, 1, -1, 2, 60, 3600, -86400, 2_000_000_000])
  # floor(ln(max(|dt|, 1)) / 0.301): ln 2 = 0.693 → 2; ln 60 = 4.094 → 13; ln 3600 = 8.189 → 27;
  # ln 86400 = 11.367 → 37; ln 2e9 = 21.42 → 71
  np.testing.assert_array_equal(time_bucket(dt, 128), [0, 0, 0, 2, 13, 27, 37, 71])
  np.testing.assert_array_equal(time_bucket(dt, 30), [0, 0, 0, 2, 13, 27, 30, 30])


def test_sampled_softmax_matches_numpy():
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 3, 4)).astype(np.float32)
  table = rng.normal(size=(6, 4)).astype(np.float32)
  targets = np.array([[1, 2, 0], [3, 3, 5]], np.int32)
  weights = (targets > 0).astype(np.float32)
  neg_ids = rng.integers(1, 6, (2, 3, 4)).astype(np.int32)
  neg_ids[1, 0, 0] = 3  # a negative equal to its target is dropped
  tau = 0.5
  loss, count = sampled_softmax_cross_entropy(h, table[targets], targets, neg_ids, table[neg_ids], weights, tau)
  total = 0.0
  for b in range(2):
    for t in range(3):
      if targets[b, t] == 0:
        continue
      negs = [table[i] @ h[b, t] / tau for i in neg_ids[b, t] if i != targets[b, t]]
      pos = table[targets[b, t]] @ h[b, t] / tau
      total += np.log(np.exp(pos) + np.sum(np.exp(negs))) - pos
  np.testing.assert_allclose(loss, total / 5, rtol=1e-5)
  assert float(count) == 5
  shared, _ = sampled_softmax_cross_entropy(
    h, table[targets], targets, neg_ids[0, 0], table[neg_ids[0, 0]], weights, tau
  )
  wide = np.broadcast_to(neg_ids[0, 0], (2, 3, 4))
  np.testing.assert_allclose(
    shared, sampled_softmax_cross_entropy(h, table[targets], targets, wide, table[wide], weights, tau)[0], rtol=1e-5
  )


def test_sampled_softmax_model_loss_and_scores():
  model = model_of(loss="sampled_softmax", num_negatives=7, temperature=0.1)
  loss, _ = nnx.jit(lambda m, b: m.loss(b))(model, train_batch())
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert nnx.jit(lambda m, b: m.score(b))(model, eval_batch()).shape == (B, N + 1)


def test_bad_config_values_fail_clearly():
  with pytest.raises(ConfigError, match="attention must be one of"):
    HSTUConfig(attention="flash")
  with pytest.raises(ConfigError, match="loss must be one of"):
    HSTUConfig(loss="bce")
  with pytest.raises(ConfigError, match="block_size=3 must divide max_len=8"):
    model_of(attention="blocked", block_size=3)


def tiny(*overrides):
  return config_lib.override(genrec.configs.get("hstu:tiny"), ["trainer.progress=false", *overrides])


def test_learns_planted_structure(tmp_path):
  results = Trainer(tiny(), tmp_path, resume=False).run()
  # popularity gets ndcg@10 ~ 0.15 on the 64-item synthetic catalogue; measured 0.90
  assert results["test"]["ndcg@10"] > 0.7, results["test"]


def test_one_device_equals_eight_devices_sampled_softmax(tmp_path):
  cfg = tiny("model.loss=sampled_softmax", "model.num_negatives=16", "model.temperature=0.1")
  mesh = lambda n, **axes: sharding.make_mesh(MeshConfig(**axes), devices=jax.devices()[:n])
  one = Trainer(cfg, tmp_path / "unused", mesh=mesh(1), resume=False)
  eight = Trainer(cfg, tmp_path / "unused", mesh=mesh(8, data=4, fsdp=2), resume=False)

  def losses(trainer, steps):
    it, out = iter(trainer.train_data.to_iter_dataset()), []
    for _ in range(steps):
      batch = {k: jax.make_array_from_process_local_data(trainer.batch_sharding, v) for k, v in next(it).items()}
      trainer.state, metrics = trainer._step(trainer.state, trainer.placed.rngs, batch)
      out.append(float(metrics["loss"]))
    return np.array(out)

  np.testing.assert_allclose(losses(one, 4), losses(eight, 4), rtol=1e-5)
