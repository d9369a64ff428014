"""HSTU: the Hierarchical Sequential Transduction Unit ("Actions Speak Louder than Words", Zhai et al., 2024).

Each layer: pre-norm (LayerNorm without parameters), one fused projection + SiLU giving U, V, Q, K; pointwise
attention A = SiLU(QKᵀ + rab) / L under a causal mask (no softmax: L is the padded sequence length, as in the
reference); output x + Linear(Dropout(U ⊙ Norm(A·V))); no separate FFN. rab, per layer, is a learned bias of the
relative position (j - i) plus one of the log-bucketed time gap between the query's NEXT interaction and key j:
  train: query times = batch["target_times"], key times = batch["input_times"]
  eval:  query times = history_times shifted left with target_time appended, key times = history_times
Item embeddings, the tied output head and the losses (full softmax, or sampled softmax with L2-normalised
embeddings and a temperature) come from genrec.models.sequential. `attention="blocked"` computes the same
attention chunked over keys with lax.scan (memory O(L·block) per layer instead of O(L²)).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import ConfigError
from genrec.models import layers
from genrec.models.common import SequenceSizes
from genrec.models.sequential import ItemSequenceModel, check_loss_config
from genrec.registry import register

ATTENTIONS = ("plain", "blocked")


@dataclasses.dataclass(frozen=True)
class HSTUConfig(SequenceSizes):
  num_items: int = 0  # 0: taken from the dataset when training starts
  max_len: int = 0  # 0: taken from data.max_len
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 1
  qk_dim: int = 64  # per head (the reference's dqk)
  v_dim: int = 64  # per head (dv, the "linear" dim)
  dropout: float = 0.2  # on U ⊙ Norm(AV), before the output projection
  emb_dropout: float = 0.2
  num_buckets: int = 128  # time-gap buckets: floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, num_buckets]
  time_bias: bool = True
  attention: str = "plain"  # plain | blocked
  block_size: int = 64  # keys per chunk for attention="blocked" (must divide max_len)
  loss: str = "softmax"  # softmax (full catalogue) | sampled_softmax
  num_negatives: int = 128  # sampled_softmax: uniform negatives per position (or per batch, shared_negatives)
  temperature: float = 0.05
  shared_negatives: bool = False

  task: str = "next_item"

  def __post_init__(self):
    if self.attention not in ATTENTIONS:
      raise ConfigError(f"model.attention must be one of {ATTENTIONS}, got {self.attention!r}")
    if self.attention == "blocked" and self.block_size < 1:
      raise ConfigError(f"model.block_size must be >= 1 for blocked attention, got {self.block_size}")
    try:
      check_loss_config(self, "model")
    except ValueError as e:
      raise ConfigError(str(e)) from None


def time_bucket(dt, num_buckets: int):
  """Log-bucketed time gaps (seconds): floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, num_buckets]."""
  mag = jnp.maximum(jnp.abs(dt), 1).astype(jnp.float32)
  return jnp.clip(jnp.floor(jnp.log(mag) / 0.301), 0, num_buckets).astype(jnp.int32)


def hstu_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxV, valid_BxL, bias_fn, *, block_size: int = 0):
  """out_i = sum_{j <= i, key j valid} SiLU(q_i·k_j + bias[b, i, j]) / L · v_j, [B, L, H, V] (float32 sums).

  bias_fn(key_idx_C) -> [B, L, C] float32: the bias of every query against keys `key_idx_C`. With block_size
  (0 < block_size < L) the keys are processed in chunks with lax.scan; each chunk is rematerialised in the
  backward pass, so no [L, L] array is ever stored. There is no softmax normaliser: chunks simply add up.
  """
  length = q_BxLxHxK.shape[1]
  query_idx_L = jnp.arange(length)

  def chunk(k_BxCxHxK, v_BxCxHxV, valid_BxC, key_idx_C):
    logits = jnp.einsum("blhk,bchk->bhlc", q_BxLxHxK, k_BxCxHxK).astype(jnp.float32)
    logits = logits + bias_fn(key_idx_C)[:, None]
    allowed = (key_idx_C[None, :] <= query_idx_L[:, None])[None, None] & valid_BxC[:, None, None, :]
    attn = jnp.where(allowed, jax.nn.silu(logits) / length, 0.0).astype(v_BxCxHxV.dtype)
    return jnp.einsum("bhlc,bchv->blhv", attn, v_BxCxHxV, preferred_element_type=jnp.float32)

  if not block_size or block_size >= length:
    return chunk(k_BxLxHxK, v_BxLxHxV, valid_BxL, query_idx_L).astype(v_BxLxHxV.dtype)
  if length % block_size:
    raise ValueError(f"block_size {block_size} must divide the sequence length {length}")
  n = length // block_size
  blocks = lambda t: jnp.moveaxis(t.reshape(t.shape[0], n, block_size, *t.shape[2:]), 1, 0)
  xs = (blocks(k_BxLxHxK), blocks(v_BxLxHxV), blocks(valid_BxL), query_idx_L.reshape(n, block_size))
  remat_chunk = jax.checkpoint(chunk)

  def body(acc, x):
    return acc + remat_chunk(*x), None

  B, _, H, V = v_BxLxHxV.shape
  out, _ = jax.lax.scan(body, jnp.zeros((B, length, H, V), jnp.float32), xs)
  return out.astype(v_BxLxHxV.dtype)


def _norm(x, eps: float = 1e-6):
  """LayerNorm without learned parameters (the reference's F.layer_norm)."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class RelativeBias(nnx.Module):
  """rab[b, i, j] = w_pos[j - i + L - 1] + w_time[bucket(query_time[b, i] - key_time[b, j])]."""

  def __init__(self, max_len: int, num_buckets: int, *, time_bias: bool, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.max_len, self.num_buckets, self.time_bias = max_len, num_buckets, time_bias
    self.pos_w = layers.param(init(rngs.params(), (2 * max_len - 1,)), (None,))
    self.ts_w = layers.param(init(rngs.params(), (num_buckets + 1,)), (None,)) if time_bias else None

  def bias_fn(self, query_times_BxL, key_times_BxL):
    """A pure function key_idx_C -> [B, L, C] (parameters read here, outside any scan)."""
    length = query_times_BxL.shape[1]
    if length > self.max_len:
      raise ValueError(f"sequence length {length} exceeds the relative bias table (max_len {self.max_len})")
    pos_w = self.pos_w[...].astype(jnp.float32)
    ts_w = None if self.ts_w is None else self.ts_w[...].astype(jnp.float32)
    query_idx_L = jnp.arange(length)

    def fn(key_idx_C):
      bias_LxC = pos_w[key_idx_C[None, :] - query_idx_L[:, None] + self.max_len - 1]
      bias = jnp.broadcast_to(bias_LxC[None], (query_times_BxL.shape[0], *bias_LxC.shape))
      if ts_w is not None:
        key_times_BxC = jnp.take(key_times_BxL, key_idx_C, axis=1)
        dt_BxLxC = query_times_BxL[:, :, None] - key_times_BxC[:, None, :]
        bias = bias + ts_w[time_bucket(dt_BxLxC, self.num_buckets)]
      return bias

    return fn


class HSTULayer(nnx.Module):
  def __init__(self, cfg: HSTUConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    width = cfg.num_heads * (2 * cfg.v_dim + 2 * cfg.qk_dim)
    self.uvqk = layers.param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.dim, width)), ("embed", "heads"))
    self.o = layers.dense(cfg.num_heads * cfg.v_dim, cfg.dim, ("heads", "embed"), rngs=rngs)
    self.rel_bias = RelativeBias(cfg.max_len, cfg.num_buckets, time_bias=cfg.time_bias, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, x_BxLxD, valid_BxL, query_times_BxL, key_times_BxL):
    cfg = self.cfg
    B, L, _ = x_BxLxD.shape
    h = jnp.einsum("bld,dw->blw", _norm(x_BxLxD), self.uvqk[...].astype(x_BxLxD.dtype))
    hv, hk = cfg.num_heads * cfg.v_dim, cfg.num_heads * cfg.qk_dim
    u, v, q, k = jnp.split(jax.nn.silu(h), [hv, 2 * hv, 2 * hv + hk], axis=-1)
    heads = lambda t, d: t.reshape(B, L, cfg.num_heads, d)
    block = cfg.block_size if cfg.attention == "blocked" else 0
    attn = hstu_attention(
      heads(q, cfg.qk_dim),
      heads(k, cfg.qk_dim),
      heads(v, cfg.v_dim),
      valid_BxL,
      self.rel_bias.bias_fn(query_times_BxL, key_times_BxL),
      block_size=block,
    )
    y = u * _norm(attn.reshape(B, L, hv))
    return x_BxLxD + self.o(self.dropout(y))


@register("hstu", HSTUConfig)
class HSTU(ItemSequenceModel):
  def __init__(self, cfg: HSTUConfig, *, rngs: nnx.Rngs):
    cfg.check_sizes()
    if cfg.attention == "blocked" and cfg.max_len % cfg.block_size:
      raise ConfigError(f"model.block_size={cfg.block_size} must divide max_len={cfg.max_len}")
    self.cfg = cfg
    self.init_items(cfg.num_items, cfg.dim, rngs=rngs)
    self.pos_emb = layers.Embed(cfg.max_len, cfg.dim, (None, "embed"), rngs=rngs)
    self.emb_dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
    self.layers = nnx.List([HSTULayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.final_norm = layers.LayerNorm(cfg.dim, rngs=rngs)
    if self.sampled:
      self.negatives_rng = rngs.dropout.fork()  # reseeded every step by the trainer, like dropout

  def encode(self, ids_BxL, query_times_BxL, key_times_BxL) -> jax.Array:
    """Hidden state at every position, [B, L, D]; position t sees items <= t (and the time of item t+1)."""
    length = ids_BxL.shape[1]
    valid_BxL = ids_BxL > 0
    x = self.item_emb(ids_BxL) * (self.cfg.dim**0.5) + self.pos_emb(jnp.arange(length))[None]
    return self.final_norm(self.stack(self.emb_dropout(x), valid_BxL, query_times_BxL, key_times_BxL))

  def stack(self, x_BxLxD, valid_BxL, query_times_BxL, key_times_BxL) -> jax.Array:
    """The HSTU layers over input embeddings (padding rows zeroed before and after every layer)."""
    x_BxLxD = x_BxLxD * valid_BxL[..., None]
    for layer in self.layers:
      x_BxLxD = layer(x_BxLxD, valid_BxL, query_times_BxL, key_times_BxL) * valid_BxL[..., None]
    return x_BxLxD

  def loss(self, batch):
    targets_BxL = batch["targets"]
    h = self.encode(batch["inputs"], batch["target_times"], batch["input_times"])
    rng = self.negatives_rng() if self.sampled else None
    return self.next_item_loss(h, targets_BxL, (targets_BxL > 0).astype(jnp.float32), rng)

  def query(self, batch) -> jax.Array:
    times_BxL = batch["history_times"]
    next_times_BxL = jnp.concatenate([times_BxL[:, 1:], batch["target_time"][:, None]], axis=1)
    return self.encode(batch["history"], next_times_BxL, times_BxL)[:, -1]
