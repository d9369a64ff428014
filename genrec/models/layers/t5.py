"""T5-style encoder-decoder blocks: bucketed relative position bias, pre-norm RMSNorm blocks, self-attention
with a functional KV cache, cross-attention.

The KV cache is a plain pair of arrays (k, v), each [B, T, H, Dh], passed in and returned: no mutable module
state, so a decode step jits and scans like any other function.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models.layers.attention import MLP, dot_product_attention
from genrec.models.layers.core import RMSNorm, dense, param


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128):
  """T5's bucket of `relative_position` = key position - query position (int array, any shape).

  Bidirectional: half the buckets for keys before the query, half for keys after it. Causal: keys after the
  query all fall in bucket 0 (the mask hides them anyway). Within each half, distances below half the half
  get a bucket each; larger ones share log-spaced buckets up to `max_distance`, beyond which all share the last.
  """
  n = -jnp.asarray(relative_position, jnp.int32)  # distance back from the query
  offset = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    offset = jnp.where(n < 0, num_buckets, 0)
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  scale = (num_buckets - max_exact) / math.log(max_distance / max_exact)
  log_n = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
  large = jnp.minimum(max_exact + (log_n * scale).astype(jnp.int32), num_buckets - 1)
  return offset + jnp.where(n < max_exact, n, large)


class RelativePositionBias(nnx.Module):
  """A learned scalar per (bucket, head), added to attention logits: [1, H, Q, K]."""

  def __init__(
    self, num_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128, rngs: nnx.Rngs
  ):
    self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
    init = nnx.initializers.normal(0.02)
    self.embedding = param(init(rngs.params(), (num_buckets, num_heads)), (None, "heads"))

  def __call__(self, query_pos_Q, key_pos_K):
    rel_QxK = key_pos_K[None, :] - query_pos_Q[:, None]
    bucket = relative_position_bucket(
      rel_QxK, bidirectional=self.bidirectional, num_buckets=self.num_buckets, max_distance=self.max_distance
    )
    bias_QxKxH = jnp.take(self.embedding[...], bucket, axis=0)
    return jnp.transpose(bias_QxKxH, (2, 0, 1))[None].astype(jnp.float32)


def init_kv_cache(batch: int, length: int, num_heads: int, head_dim: int, dtype=jnp.float32):
  """An empty self-attention cache (k, v), each [batch, length, heads, head_dim]."""
  zeros = jnp.zeros((batch, length, num_heads, head_dim), dtype)
  return zeros, zeros


class Attention(nnx.Module):
  """Multi-head attention without biases (T5). Self-attention (optionally cached) or cross-attention."""

  def __init__(self, dim: int, num_heads: int, head_dim: int, *, dropout: float = 0.0, rngs: nnx.Rngs):
    self.num_heads, self.head_dim = num_heads, head_dim
    inner = num_heads * head_dim
    self.q = dense(dim, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
    self.k = dense(dim, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
    self.v = dense(dim, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
    self.o = dense(inner, dim, ("heads", "embed"), use_bias=False, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _split(self, t):
    return t.reshape(*t.shape[:-1], self.num_heads, self.head_dim)

  def project_kv(self, x_BxSxD):
    """(k, v), each [B, S, H, Dh]: computed once per encoder output for cross-attention."""
    return self._split(self.k(x_BxSxD)), self._split(self.v(x_BxSxD))

  def attend(self, x_BxLxD, k_BxSxHxK, v_BxSxHxK, *, mask=None, bias=None):
    """Queries from x against given keys/values. If x's batch is G times the keys' batch, each key row serves G
    consecutive query rows (beams of one user sharing an encoder output)."""
    rows, length = x_BxLxD.shape[:2]
    group = rows // k_BxSxHxK.shape[0]
    q = self._split(self.q(x_BxLxD)).reshape(rows // group, group * length, self.num_heads, self.head_dim)
    out = dot_product_attention(q, k_BxSxHxK, v_BxSxHxK, mask=mask, bias=bias)
    out = out.reshape(rows, length, self.num_heads * self.head_dim)
    return self.dropout(self.o(out))

  def __call__(self, x_BxLxD, *, mask=None, bias=None):
    k, v = self.project_kv(x_BxLxD)
    return self.attend(x_BxLxD, k, v, mask=mask, bias=bias)

  def cached(self, x_BxTxD, cache, index, *, mask=None, bias=None):
    """Self-attention for T new positions starting at `index` (int or traced scalar): writes their keys/values
    into `cache` (k, v) [B, S, H, Dh] and attends over the whole cache (`mask` must hide unwritten slots).
    Returns (out [B, T, D], new cache)."""
    k_new, v_new = self.project_kv(x_BxTxD)
    start = (0, index, 0, 0)
    k = jax.lax.dynamic_update_slice(cache[0], k_new.astype(cache[0].dtype), start)
    v = jax.lax.dynamic_update_slice(cache[1], v_new.astype(cache[1].dtype), start)
    return self.attend(x_BxTxD, k, v, mask=mask, bias=bias), (k, v)


class EncoderBlock(nnx.Module):
  """Pre-norm (RMSNorm) bidirectional self-attention + MLP, each with a residual."""

  def __init__(
    self,
    dim: int,
    num_heads: int,
    head_dim: int,
    mlp_dim: int,
    *,
    dropout: float = 0.0,
    activation: str = "relu",
    rngs: nnx.Rngs,
  ):
    self.attn_norm = RMSNorm(dim, rngs=rngs)
    self.attn = Attention(dim, num_heads, head_dim, dropout=dropout, rngs=rngs)
    self.mlp_norm = RMSNorm(dim, rngs=rngs)
    self.mlp = MLP(dim, mlp_dim, activation=activation, dropout=dropout, rngs=rngs)

  def __call__(self, x_BxSxD, *, mask=None, bias=None):
    x_BxSxD = x_BxSxD + self.attn(self.attn_norm(x_BxSxD), mask=mask, bias=bias)
    return x_BxSxD + self.mlp(self.mlp_norm(x_BxSxD))


class DecoderBlock(nnx.Module):
  """Pre-norm causal self-attention, cross-attention over the encoder output, MLP; each with a residual.

  `cross_kv` is this block's `cross_attn.project_kv(encoder_output)`; `cross_bias` (optional) is added to the
  cross-attention logits. With `cache` (k, v) the self-attention
  writes the new positions at `index` and returns the updated cache; without it, it attends within x only.
  """

  def __init__(
    self,
    dim: int,
    num_heads: int,
    head_dim: int,
    mlp_dim: int,
    *,
    dropout: float = 0.0,
    activation: str = "relu",
    rngs: nnx.Rngs,
  ):
    self.self_norm = RMSNorm(dim, rngs=rngs)
    self.self_attn = Attention(dim, num_heads, head_dim, dropout=dropout, rngs=rngs)
    self.cross_norm = RMSNorm(dim, rngs=rngs)
    self.cross_attn = Attention(dim, num_heads, head_dim, dropout=dropout, rngs=rngs)
    self.mlp_norm = RMSNorm(dim, rngs=rngs)
    self.mlp = MLP(dim, mlp_dim, activation=activation, dropout=dropout, rngs=rngs)

  def __call__(
    self, x_BxTxD, cross_kv, *, self_mask=None, self_bias=None, cross_mask=None, cross_bias=None, cache=None, index=0
  ):
    h = self.self_norm(x_BxTxD)
    if cache is None:
      x_BxTxD = x_BxTxD + self.self_attn(h, mask=self_mask, bias=self_bias)
    else:
      out, cache = self.self_attn.cached(h, cache, index, mask=self_mask, bias=self_bias)
      x_BxTxD = x_BxTxD + out
    x_BxTxD = x_BxTxD + self.cross_attn.attend(self.cross_norm(x_BxTxD), *cross_kv, mask=cross_mask, bias=cross_bias)
    return x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD)), cache
