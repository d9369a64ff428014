"""SASRec: a causal transformer over item ids (Kang & McAuley, 2018), trained "SASRec+" style.

Training: every position predicts the next item with a full softmax over the catalogue (cross-entropy),
input and output share the item embedding table (genrec.models.sequential). Batches (left-padded, 0 = padding):
  train: {"inputs": int32[B, L], "targets": int32[B, L]}    targets[t] = the item after inputs[t]
  eval:  {"history": int32[B, L], "seen": int32[B, S], ...}  score the item after history[-1]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers
from genrec.models.common import SequenceSizes
from genrec.models.sequential import ItemSequenceModel, causal_stack
from genrec.registry import register


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

  task: str = "next_item"


@register("sasrec", SASRecConfig)
class SASRec(ItemSequenceModel):
  def __init__(self, cfg: SASRecConfig, *, rngs: nnx.Rngs):
    cfg.check_sizes()
    self.cfg = cfg
    self.init_items(cfg.num_items, cfg.dim, rngs=rngs)
    self.pos_emb = layers.Embed(cfg.max_len, cfg.dim, (None, "embed"), rngs=rngs)
    self.emb_dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
    self.blocks = nnx.List(
      [
        layers.TransformerBlock(cfg.dim, cfg.num_heads, cfg.mlp_dim, dropout=cfg.dropout, rngs=rngs)
        for _ in range(cfg.num_layers)
      ]
    )
    self.final_norm = layers.LayerNorm(cfg.dim, rngs=rngs)

  def encode(self, ids_BxL: jax.Array) -> jax.Array:
    """Hidden state at every position, [B, L, D]; position t sees items <= t."""
    length = ids_BxL.shape[1]
    x = self.item_emb(ids_BxL) * (self.cfg.dim**0.5) + self.pos_emb(jnp.arange(length))[None]
    return causal_stack(x, ids_BxL > 0, self.emb_dropout, self.blocks, self.final_norm)

  def loss(self, batch):
    targets_BxL = batch["targets"]
    return self.next_item_loss(self.encode(batch["inputs"]), targets_BxL, (targets_BxL > 0).astype(jnp.float32))

  def query(self, batch) -> jax.Array:
    return self.encode(batch["history"])[:, -1]
