"""SASRec: a causal transformer over item ids (Kang & McAuley, 2018), trained "SASRec+" style.

Training: every position predicts the next item with a full softmax over the catalogue (cross-entropy),
input and output share the item embedding table (genrec.models.sequential). Batches (left-padded, 0 = padding):
  train: {"inputs": int32[B, L], "targets": int32[B, L]}    targets[t] = the item after inputs[t]
  eval:  {"history": int32[B, L], "seen": int32[B, S], ...}  score the item after history[-1]

Options beyond the defaults (the original genrec SASRec): `block="post_norm"` with `input_norm`, `init_std=0.02`
and `emb_scale=False` is RecBole's SASRec (post-norm blocks, no final norm, LayerNorm on the embedding sum,
normal(0.02) weights, unscaled item embeddings). `history_bias` adds a learned score to the items of the
model's input window, in training and scoring alike: "scalar" one value for every such item, "recency" one per
distance back (t - s for the item at position s, seen from position t). It lets the model rank what the user
already saw down (or up, on data with repeats), which matters when evaluation keeps seen items as candidates
(eval.candidates=all).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import ConfigError
from genrec.models import layers
from genrec.models.common import SequenceSizes
from genrec.models.sequential import ItemSequenceModel, causal_stack
from genrec.registry import register

BLOCKS = ("pre_norm", "post_norm")
HISTORY_BIAS = ("none", "scalar", "recency")


@dataclasses.dataclass(frozen=True)
class SASRecConfig(SequenceSizes):
  num_items: int = 0  # 0: taken from the dataset when training starts
  max_len: int = 0  # 0: taken from data.max_len
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  dropout: float = 0.2
  emb_dropout: float = 0.2
  block: str = "pre_norm"  # pre_norm (+ a final LayerNorm) | post_norm (no final norm)
  input_norm: bool = False  # LayerNorm on item + position embedding, before the embedding dropout
  init_std: float = 0.0  # > 0: every embedding and dense kernel ~ normal(0, init_std); 0: the layer defaults
  emb_scale: bool = True  # multiply item embeddings by sqrt(dim)
  history_bias: str = "none"  # none | scalar | recency: a learned score added to the input window's items

  task: str = "next_item"

  def __post_init__(self):
    if self.block not in BLOCKS:
      raise ConfigError(f"model.block must be one of {BLOCKS}, got {self.block!r}")
    if self.history_bias not in HISTORY_BIAS:
      raise ConfigError(f"model.history_bias must be one of {HISTORY_BIAS}, got {self.history_bias!r}")
    if self.init_std < 0:
      raise ConfigError(f"model.init_std must be >= 0, got {self.init_std}")


def history_logit_bias(ids_BxL, table_R, queries_Q, num_columns: int):
  """[B, Q, num_columns]: for query position t = queries[q], table[min(t - s, R - 1)] at the column of each item
  ids[b, s] with s <= t (its latest occurrence when it repeats), 0 at every other column. Padding ids add 0."""
  length = ids_BxL.shape[1]
  s_L = jnp.arange(length)
  later_BxLxL = (ids_BxL[:, :, None] == ids_BxL[:, None, :]) & (s_L[:, None] < s_L[None, :])[None]
  next_BxL = jnp.min(jnp.where(later_BxLxL, s_L[None, None, :], length), axis=2)  # next occurrence, L if none
  age_QxL = queries_Q[:, None] - s_L[None, :]
  live_BxQxL = (age_QxL >= 0)[None] & (queries_Q[None, :, None] < next_BxL[:, None, :]) & (ids_BxL > 0)[:, None, :]
  value_BxQxL = jnp.where(live_BxQxL, table_R[jnp.clip(age_QxL, 0, table_R.shape[0] - 1)][None], 0.0)
  b = jnp.arange(ids_BxL.shape[0])[:, None, None]
  q = jnp.arange(queries_Q.shape[0])[None, :, None]
  zeros = jnp.zeros((ids_BxL.shape[0], queries_Q.shape[0], num_columns), value_BxQxL.dtype)
  return zeros.at[b, q, ids_BxL[:, None, :]].add(value_BxQxL)


@register("sasrec", SASRecConfig)
class SASRec(ItemSequenceModel):
  def __init__(self, cfg: SASRecConfig, *, rngs: nnx.Rngs):
    cfg.check_sizes()
    self.cfg = cfg
    std = cfg.init_std or None
    kernel_init = nnx.initializers.normal(std) if std else layers.core.default_kernel_init
    self.init_items(cfg.num_items, cfg.dim, stddev=std, rngs=rngs)
    self.pos_emb = layers.Embed(cfg.max_len, cfg.dim, (None, "embed"), rngs=rngs, stddev=std)
    self.input_norm = layers.LayerNorm(cfg.dim, rngs=rngs) if cfg.input_norm else None
    self.emb_dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
    post = cfg.block == "post_norm"
    self.blocks = nnx.List(
      [
        layers.TransformerBlock(
          cfg.dim, cfg.num_heads, cfg.mlp_dim, dropout=cfg.dropout, post_norm=post, kernel_init=kernel_init, rngs=rngs
        )
        for _ in range(cfg.num_layers)
      ]
    )
    self.final_norm = None if post else layers.LayerNorm(cfg.dim, rngs=rngs)
    size = {"none": 0, "scalar": 1, "recency": cfg.max_len}[cfg.history_bias]
    self.history_bias = layers.param(jnp.zeros((size,)), (None,)) if size else None

  def encode(self, ids_BxL: jax.Array) -> jax.Array:
    """Hidden state at every position, [B, L, D]; position t sees items <= t."""
    length = ids_BxL.shape[1]
    item = self.item_emb(ids_BxL)
    x = (item * (self.cfg.dim**0.5) if self.cfg.emb_scale else item) + self.pos_emb(jnp.arange(length))[None]
    if self.input_norm is not None:
      x = self.input_norm(x)
    final_norm = self.final_norm if self.final_norm is not None else (lambda h: h)
    return causal_stack(x, ids_BxL > 0, self.emb_dropout, self.blocks, final_norm)

  def loss(self, batch):
    inputs_BxL, targets_BxL = batch["inputs"], batch["targets"]
    bias = None
    if self.history_bias is not None:
      rows = self.item_emb.embedding.shape[0]
      bias = history_logit_bias(inputs_BxL, self.history_bias[...], jnp.arange(inputs_BxL.shape[1]), rows)
    weights = (targets_BxL > 0).astype(jnp.float32)
    return self.next_item_loss(self.encode(inputs_BxL), targets_BxL, weights, logit_bias=bias)

  def query(self, batch) -> jax.Array:
    return self.encode(batch["history"])[:, -1]

  def score(self, batch) -> jax.Array:
    """Scores of every item (column 0 = padding, -inf) as the next item after `history`: [B, N+1]; with
    history_bias, the items of `history` get theirs (the window the model reads, not the whole `seen`)."""
    scores = self.item_logits(self.query(batch))
    if self.history_bias is None:
      return scores
    history = batch["history"]
    last = jnp.asarray([history.shape[1] - 1])
    return scores + history_logit_bias(history, self.history_bias[...], last, scores.shape[1])[:, 0]
