"""Shared layers: attention against a NumPy softmax attention, Linear on N-d inputs."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import layers


def numpy_attention(q, k, v, mask, bias):
  """Softmax attention in float64, masked keys dropped before the softmax (not given a large negative)."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum("blhk,bshk->bhls", q, k) / np.sqrt(q.shape[-1]) + np.asarray(bias, np.float64)
  mask = np.broadcast_to(np.asarray(mask), logits.shape)
  logits = np.where(mask, logits, -np.inf)
  with np.errstate(invalid="ignore"):  # rows with no visible key become NaN; the test skips them
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
  return np.einsum("bhls,bshk->blhk", probs, v)


def test_attention_matches_numpy_with_padding_mask_causal_mask_and_bias():
  rng = np.random.default_rng(0)
  B, L, H, K = 3, 5, 2, 4
  q, k, v = (rng.normal(size=(B, L, H, K)).astype(np.float32) * 2 for _ in range(3))
  bias = rng.normal(size=(1, H, L, L)).astype(np.float32)
  valid = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]], bool)  # left padding
  mask = np.asarray(layers.padding_mask(jnp.asarray(valid))) & np.asarray(layers.causal_mask(L))
  got = layers.dot_product_attention(
    jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=jnp.asarray(mask), bias=jnp.asarray(bias)
  )
  want = numpy_attention(q, k, v, mask, bias)
  rows = mask.any(-1)[:, 0]  # [B, L]: queries with at least one visible key
  assert rows.sum() < B * L  # the case where a padded query sees nothing is in the test
  np.testing.assert_allclose(np.asarray(got)[rows], want[rows], atol=2e-6)
  assert np.isfinite(np.asarray(got)).all()  # a query that sees no key gets finite (meaningless) output


def test_attention_gradients_match_softmax_then_product():
  """The max subtracted before exp carries no gradient: the gradient equals that of the textbook form."""
  rng = np.random.default_rng(1)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 4, 2, 3)), jnp.float32) for _ in range(3))
  mask = layers.padding_mask(jnp.asarray([[1, 1, 1, 1], [0, 1, 1, 1]], bool))

  def textbook(q, k, v):
    logits = jnp.einsum("blhk,bshk->bhls", q, k) / np.sqrt(3.0)
    probs = jax.nn.softmax(jnp.where(mask, logits, -1e9), axis=-1)
    return jnp.einsum("bhls,bshk->blhk", probs, v)

  loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)))
  got = jax.grad(loss(lambda q, k, v: layers.dot_product_attention(q, k, v, mask=mask)), argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(loss(textbook), argnums=(0, 1, 2))(q, k, v)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


def test_linear_on_a_3d_input_equals_the_row_wise_product():
  layer = layers.dense(4, 3, ("embed", "mlp"), rngs=nnx.Rngs(0))
  layer.bias[...] = jnp.arange(3.0)
  x = np.random.default_rng(2).normal(size=(2, 5, 4)).astype(np.float32)
  got = np.asarray(layer(jnp.asarray(x)))
  want = x.astype(np.float64) @ np.asarray(layer.kernel[...], np.float64) + np.arange(3.0)
  assert got.shape == (2, 5, 3)
  np.testing.assert_allclose(got, want, atol=1e-5)
