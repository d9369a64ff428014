"""Semantic IDs: k-means, RQ-KMeans, the RQ-VAE (learning, k-means init, rotation trick, dead-code restart),
TIGER's collision digit and code statistics."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genrec import registry
from genrec.models.semantic_ids import (
  RQVAE,
  CodeTableError,
  RQVAEConfig,
  code_stats,
  dedup_codes,
  fit_rqkmeans,
  kmeans,
  lloyd_step,
  nearest,
  rotate_to,
  rq_decode,
  rq_encode,
)


def planted(n=512, d=16, seed=0, top_scale=10.0, sub_scale=2.0, noise=0.05):
  """x = top[i] + sub[j] + noise: a 2-level hierarchy whose second level lives in the residual."""
  rng = np.random.default_rng(seed)
  top, sub = rng.normal(size=(4, d)) * top_scale, rng.normal(size=(4, d)) * sub_scale
  i, j = rng.integers(0, 4, n), rng.integers(0, 4, n)
  x = top[i] + sub[j] + noise * rng.normal(size=(n, d))
  return x.astype(np.float32), i, j


def same_partition(labels, codes):
  """True when codes equal labels up to a relabelling (a bijection between the used values)."""
  pairs = set(zip(np.asarray(labels).tolist(), np.asarray(codes).tolist()))
  return len(pairs) == len(set(np.asarray(labels).tolist())) == len(set(np.asarray(codes).tolist()))


# -- k-means and RQ-KMeans ------------------------------------------------------------------------------------
def test_kmeans_recovers_planted_clusters():
  x, i, _ = planted()
  for seed in range(3):
    centroids, assign = kmeans(jax.random.key(seed), x, 4, iters=10)
    assert centroids.shape == (4, 16) and centroids.dtype == jnp.float32 and assign.dtype == jnp.int32
    assert same_partition(i, assign)
  # Chunked distances (512 rows in padded chunks of 96) give the same nearest centroids.
  whole, chunked = jax.jit(lambda x, c: (nearest(x, c), nearest(x, c, chunk_size=96)))(x, centroids)
  np.testing.assert_array_equal(chunked[0], whole[0])
  np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-5, atol=1e-3)
  np.testing.assert_array_equal(whole[0], assign)


def test_kmeans_reseeds_empty_clusters():
  x = np.array([[0.0], [1.0], [10.0], [14.0]], np.float32)
  centroids = np.array([[0.5], [11.0], [100.0]], np.float32)  # the third owns no point
  new = jax.jit(lloyd_step)(x, centroids)
  np.testing.assert_allclose(new, [[0.5], [12.0], [14.0]])  # re-seeded on the point fitted worst
  # Fewer distinct points than clusters: finite centroids, each distinct point's copies kept together.
  x, i, _ = planted()
  x = x[np.arange(512) % 3]
  centroids, assign = kmeans(jax.random.key(0), x, 4, iters=10)
  assert np.isfinite(np.asarray(centroids)).all() and same_partition(np.arange(512) % 3, assign)
  _, assign = kmeans(jax.random.key(0), x[:64], 4, iters=2, init="random")
  assert same_partition(np.arange(64) % 3, assign)


def test_rqkmeans_recovers_hierarchy_and_error_falls_with_levels():
  x, i, j = planted()
  books = fit_rqkmeans(jax.random.key(0), x, levels=3, codebook_size=4, iters=10)
  assert books.shape == (3, 4, 16)
  codes = rq_encode(books, x)
  assert codes.shape == (512, 3) and codes.dtype == jnp.int32
  assert same_partition(i, codes[:, 0]) and same_partition(j, codes[:, 1])
  errors = [float(jnp.mean(jnp.sum(jnp.square(rq_decode(books[:l], codes[:, :l]) - x), -1))) for l in (1, 2, 3)]
  assert errors[0] > 10 * errors[1] > 0 and errors[2] < errors[1]
  assert errors[1] < 0.01 * float(np.mean(np.sum(np.square(x), -1)))


def test_kmeans_bad_input():
  x = np.zeros((5, 3), np.float32)
  with pytest.raises(ValueError, match="needs at least 8 points; got 5"):
    kmeans(jax.random.key(0), x, 8)
  with pytest.raises(ValueError, match="not one of"):
    kmeans(jax.random.key(0), x, 2, init="forgy")
  with pytest.raises(ValueError, match=r"2-D array \[N, D\]"):
    fit_rqkmeans(jax.random.key(0), x[0], 2, 2)


# -- RQ-VAE -------------------------------------------------------------------------------------------------
SHAPES = dict(input_dim=16, hidden_dims=(32,), latent_dim=16, levels=2, codebook_size=4)


def rqvae_cfg(**kw):
  return RQVAEConfig(**{**SHAPES, "dead_code_steps": 0, "kmeans_iters": 10, **kw})


@functools.cache
def _initial_state():
  return nnx.split(nnx.jit(lambda: RQVAE(rqvae_cfg(), rngs=nnx.Rngs(params=0, dropout=1)))())[1]


def build(cfg):
  """A fresh model of cfg (same shapes in every test: the parameters are initialised, and compiled, once)."""
  graphdef = nnx.split(nnx.eval_shape(lambda: RQVAE(cfg, rngs=nnx.Rngs(params=0, dropout=1))))[0]
  return nnx.merge(graphdef, jax.tree.map(lambda v: v, _initial_state()))


def split(model):
  graphdef, *states = nnx.split(model, nnx.Param, nnx.RngState, ...)
  return graphdef, *jax.device_put(states, jax.devices()[0])  # committed, like the step's outputs: one compile


def functional_loss(graphdef):
  """The trainer's contract: merge, loss, hand back the changed non-Param state."""

  def loss_fn(params, rngs, other, batch):
    model = nnx.merge(graphdef, params, rngs, jax.tree.map(lambda v: v, other))
    loss, metrics = model.loss(batch)
    return loss, (metrics, nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.RngState))))

  return loss_fn


def scaled_planted(n=512):
  x, i, j = planted(n=n, top_scale=1.0, sub_scale=0.3, noise=0.01)
  return x, i, j


def test_rqvae_learns_planted_data_with_kmeans_init():
  x, i, j = scaled_planted()
  cfg = rqvae_cfg(dead_code_steps=20)
  graphdef, params, rngs, other = split(build(cfg))
  tx = optax.adam(3e-3)
  grad_fn = jax.value_and_grad(functional_loss(graphdef), has_aux=True)

  @jax.jit
  def step(params, other, opt, batch):
    (_, (metrics, other)), grads = grad_fn(params, rngs, other, batch)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), other, opt, metrics

  def train(params, other, steps):
    opt = jax.device_put(tx.init(params), jax.devices()[0])
    rng = np.random.default_rng(0)
    history = []
    for _ in range(steps):
      rows = rng.choice(len(x), 128, replace=False)
      params, other, opt, metrics = step(params, other, opt, {"embedding": x[rows], "item": rows})
      history.append(metrics)
    return params, other, jax.device_get(history)

  random_step0 = train(params, other, 1)[2][0]
  model = nnx.merge(graphdef, params, rngs, other)
  assert model.init_codebooks(x, jax.random.key(0)).shape == (2, 4, 16)
  params, other, history = train(*split(model)[1::2], 300)
  first, last = history[0], history[-1]
  assert first["commitment"] < 0.2 * random_step0["commitment"]  # k-means init beats random at step 0
  assert last["recon_rel"] < 0.05 and last["recon_rel"] < 0.5 * first["recon_rel"], (first, last)
  trained = nnx.merge(graphdef, params, rngs, other)
  codes = np.asarray(nnx.jit(lambda m, b: m.encode(b))(trained, {"embedding": x}))
  stats = code_stats(codes, cfg.codebook_size)
  assert stats["usage"] == [1.0, 1.0] and stats["distinct_tuples"] == 16, stats
  assert same_partition(i * 4 + j, codes[:, 0] * 4 + codes[:, 1])  # the planted 16 clusters, one tuple each
  x_hat = nnx.jit(lambda m, c: m.decode_codes(c))(trained, codes)
  assert np.mean(np.sum((np.asarray(x_hat) - x) ** 2, -1)) < 0.05 * np.mean(np.sum(x**2, -1))


def test_rotation_trick_same_forward_as_ste_and_grads_reach_encoder():
  e = jax.random.normal(jax.random.key(0), (5, 8))
  q = jax.random.normal(jax.random.key(1), (5, 8)) * 3
  v = jax.random.normal(jax.random.key(2), (5, 8))

  @jax.jit
  def probe(e, q, v):
    value, along_e = jax.jvp(lambda e: rotate_to(e, q), (e,), (e,))
    return value, along_e, jax.jvp(lambda e: rotate_to(e, q), (e,), (v,))[1]

  value, along_e, along_v = probe(e, q, v)
  np.testing.assert_allclose(value, q, rtol=1e-5, atol=1e-5)
  # The Jacobian is (‖q‖/‖e‖)·R, R a rotation taking e to q's direction: e ↦ q, lengths scale by ‖q‖/‖e‖.
  np.testing.assert_allclose(along_e, q, rtol=1e-4, atol=1e-4)
  ratio = np.linalg.norm(q, axis=-1) / np.linalg.norm(e, axis=-1)
  np.testing.assert_allclose(np.linalg.norm(along_v, axis=-1), ratio * np.linalg.norm(v, axis=-1), rtol=1e-4)

  x, _, _ = scaled_planted(64)
  batch = {"embedding": x, "item": np.arange(64)}
  out = {}
  for quantizer in ("ste", "rotation"):
    graphdef, params, rngs, other = split(build(rqvae_cfg(quantizer=quantizer)))
    fn = jax.jit(jax.value_and_grad(functional_loss(graphdef), has_aux=True))
    out[quantizer] = fn(params, rngs, other, batch)
  (loss_ste, (m_ste, _)), g_ste = out["ste"]
  (loss_rot, (m_rot, _)), g_rot = out["rotation"]
  np.testing.assert_allclose(m_rot["recon"], m_ste["recon"], rtol=1e-5)
  np.testing.assert_allclose(loss_rot, loss_ste, rtol=1e-5)
  k_ste, k_rot = g_ste["encoder"][0]["kernel"][...], g_rot["encoder"][0]["kernel"][...]
  assert np.isfinite(k_rot).all() and float(jnp.abs(k_rot).max()) > 0
  assert float(jnp.abs(k_rot - k_ste).max()) > 1e-6  # a different gradient, not the STE's copy
  np.testing.assert_allclose(
    g_rot["decoder"][0]["kernel"][...], g_ste["decoder"][0]["kernel"][...], rtol=1e-4, atol=1e-6
  )


def test_dead_code_restart_revives_an_unused_code():
  x, _, _ = scaled_planted(64)
  cfg = rqvae_cfg(dead_code_steps=3)
  model = build(cfg)
  model.codebooks[...] = model.codebooks[...].at[0, 3].set(100.0)  # code 3 of level 0: nobody's nearest
  counters = np.zeros((2, 4), np.int32)
  counters[0, 3] = 2  # one step short of dead
  model.unused_steps[...] = jnp.asarray(counters)
  batch = {"embedding": x, "item": np.arange(64)}
  encode = nnx.jit(lambda m, b: m.encode(b))
  codes_before = np.asarray(encode(model, batch))
  assert 3 not in codes_before[:, 0]

  graphdef, params, rngs, other = split(model)
  _, (metrics, new_other) = jax.jit(functional_loss(graphdef))(params, rngs, other, batch)
  assert float(metrics["restarted/l0"]) == 1 / 4 and float(metrics["restarted/l1"]) == 0.0
  revived = nnx.merge(graphdef, params, rngs, new_other)
  used = np.stack([np.bincount(codes_before[:, level], minlength=4) > 0 for level in range(2)])
  expected = np.where(used, 0, counters + 1)
  expected[0, 3] = 0  # restarted: counter reset
  np.testing.assert_array_equal(revived.unused_steps[...], expected)
  np.testing.assert_array_equal(revived.codebooks[...], model.codebooks[...])  # parameters untouched
  # Only code 3 moved, onto the batch latent that level 0 fitted worst; that row now picks it.
  latents = np.asarray(nnx.jit(lambda m, x: m.latent(x, deterministic=True))(model, x))
  books = np.asarray(model.codebook())
  worst = int(np.argmax(np.min(((latents[:, None] - books[0][None]) ** 2).sum(-1), axis=1)))
  new_books = np.asarray(revived.codebook())
  np.testing.assert_allclose(new_books[0, 3], latents[worst], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.delete(new_books[0], 3, axis=0), np.delete(books[0], 3, axis=0))
  assert np.asarray(encode(revived, batch))[worst, 0] == 3

  model.eval()  # eval mode: counters stay put
  nnx.jit(lambda m, b: m.loss(b))(model, batch)
  np.testing.assert_array_equal(model.unused_steps[...], counters)


def test_rqvae_registered_and_bad_config():
  assert registry.model_class("rqvae") is RQVAE and registry.config_class("rqvae") is RQVAEConfig
  assert RQVAEConfig.task == "item_embeddings"
  with pytest.raises(ValueError, match="input_dim is 0"):
    RQVAE(RQVAEConfig(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="quantizer='gumbel' is not one of"):
    RQVAE(rqvae_cfg(quantizer="gumbel"), rngs=nnx.Rngs(0))
  model = build(rqvae_cfg())
  with pytest.raises(ValueError, match="needs at least that many items; got 3"):
    model.init_codebooks(np.zeros((3, 16), np.float32), jax.random.key(0))


# -- collisions ---------------------------------------------------------------------------------------------
CODES = np.array([[1, 2], [0, 0], [1, 2], [3, 1], [1, 2], [0, 0]])


def test_dedup_codes_literal():
  expected = np.array([[1, 2, 0], [0, 0, 0], [1, 2, 1], [3, 1, 0], [1, 2, 2], [0, 0, 1]], np.int32)
  out = dedup_codes(CODES, codebook_size=4, extra_size=3)
  np.testing.assert_array_equal(out, expected)
  assert out.dtype == np.int32 and len({tuple(r) for r in out.tolist()}) == len(out)


def test_code_stats_literal():
  stats = code_stats(CODES, 4)
  perplexity = float(np.exp(-(2 / 6 * np.log(2 / 6) + 3 / 6 * np.log(3 / 6) + 1 / 6 * np.log(1 / 6))))
  assert {k: v for k, v in stats.items() if k != "perplexity"} == {
    "num_items": 6,
    "levels": 2,
    "distinct_tuples": 3,
    "collision_rate": 5 / 6,
    "max_items_per_tuple": 3,
    "usage": [0.75, 0.75],
  }
  assert stats["perplexity"] == pytest.approx([perplexity, perplexity])
  unique = code_stats(np.array(list(itertools.product(range(2), range(2)))), 2)
  assert unique["collision_rate"] == 0.0 and unique["perplexity"] == pytest.approx([2.0, 2.0])


def test_code_table_errors():
  with pytest.raises(CodeTableError, match=r"code 4 of item row 3 at level 0 is outside \[0, 4\)"):
    dedup_codes(np.array([[0, 1], [1, 1], [2, 3], [4, 0]]), codebook_size=4)
  with pytest.raises(CodeTableError, match="code -1 of item row 0 at level 1 is outside non-negative"):
    dedup_codes(np.array([[0, -1]]))
  with pytest.raises(CodeTableError, match=r"outside \[0, 4\)"):
    code_stats(np.array([[0, 7]]), 4)
  with pytest.raises(CodeTableError, match="empty"):
    dedup_codes(np.zeros((0, 3), np.int32))
  with pytest.raises(CodeTableError, match="empty"):
    code_stats(np.zeros((0, 3), np.int32), 4)
  with pytest.raises(
    CodeTableError,
    match=r"3 items share the code tuple \(1, 2\) \(item rows 0, 2, 4\); the extra "
    r"digit would reach 2 but must stay below extra_size=2",
  ):
    dedup_codes(CODES, extra_size=2)
  with pytest.raises(CodeTableError, match="integers"):
    dedup_codes(np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("high, levels", [(4, 3), (64, 4), (2**40, 2)])  # the last: keys would overflow
def test_group_rows_equals_numpy_unique_over_rows(high, levels):
  from genrec.models.semantic_ids.collisions import group_rows

  codes = np.random.default_rng(0).integers(0, high, (500, levels))
  codes[250:] = codes[:250]  # every row has a twin
  inverse, counts = group_rows(codes)
  _, want_inverse, want_counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
  np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))
  np.testing.assert_array_equal(counts, want_counts)
