"""BERT4Rec: a bidirectional transformer over item ids trained by masked-item prediction (Sun et al., 2019).

Training: the train window (inputs plus the last target, left-padded to max_len+1) has each real item replaced
by the mask token (id num_items+1) with probability mask_ratio, drawn from an RNG stream the trainer reseeds
every step; full-softmax cross-entropy over the catalogue at masked positions only. Padding is never masked.
Scoring: the mask token is appended after the history and its position scores the next item.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import ConfigError
from genrec.models import layers
from genrec.models.common import SequenceSizes
from genrec.models.sequential import ItemSequenceModel, softmax_cross_entropy
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class BERT4RecConfig(SequenceSizes):
  num_items: int = 0  # 0: taken from the dataset when training starts
  max_len: int = 0  # 0: taken from data.max_len (the model sees max_len + 1 positions)
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  dropout: float = 0.2
  emb_dropout: float = 0.2
  mask_ratio: float = 0.2

  task: str = "next_item"

  def __post_init__(self):
    if not 0.0 < self.mask_ratio < 1.0:
      raise ConfigError(f"model.mask_ratio must be in (0, 1), got {self.mask_ratio}")


@register("bert4rec", BERT4RecConfig)
class BERT4Rec(ItemSequenceModel):
  def __init__(self, cfg: BERT4RecConfig, *, rngs: nnx.Rngs):
    cfg.check_sizes()
    self.cfg = cfg
    self.mask_id = cfg.num_items + 1
    self.init_items(cfg.num_items, cfg.dim, extra_tokens=1, rngs=rngs)
    self.pos_emb = layers.Embed(cfg.max_len + 1, cfg.dim, (None, "embed"), rngs=rngs)
    self.emb_dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
    self.blocks = nnx.List(
      [
        layers.TransformerBlock(cfg.dim, cfg.num_heads, cfg.mlp_dim, dropout=cfg.dropout, rngs=rngs)
        for _ in range(cfg.num_layers)
      ]
    )
    self.final_norm = layers.LayerNorm(cfg.dim, rngs=rngs)
    self.mask_rng = rngs.dropout.fork()

  def encode(self, ids_BxL: jax.Array) -> jax.Array:
    """Hidden state at every position, [B, L, D]; every real position sees every other (padding mask only)."""
    length = ids_BxL.shape[1]
    valid_BxL = ids_BxL > 0
    x = self.item_emb(ids_BxL) * (self.cfg.dim**0.5) + self.pos_emb(jnp.arange(length))[None]
    x = self.emb_dropout(x) * valid_BxL[..., None]
    mask = layers.padding_mask(valid_BxL)
    for block in self.blocks:
      x = block(x, mask=mask) * valid_BxL[..., None]
    return self.final_norm(x)

  def mask_items(self, ids_BxL, rng):
    """(ids with masked positions set to the mask token, bool [B, L] masked); padding is never masked."""
    masked_BxL = jax.random.bernoulli(rng, self.cfg.mask_ratio, ids_BxL.shape) & (ids_BxL > 0)
    return jnp.where(masked_BxL, self.mask_id, ids_BxL), masked_BxL

  def loss(self, batch):
    seq_BxL = jnp.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)
    corrupted_BxL, masked_BxL = self.mask_items(seq_BxL, self.mask_rng())
    logits = self.item_logits(self.encode(corrupted_BxL), padded=True)
    loss, count = softmax_cross_entropy(logits, seq_BxL, masked_BxL.astype(jnp.float32))
    return loss, {"loss": loss, "tokens": count}

  def query(self, batch) -> jax.Array:
    history_BxL = batch["history"]
    mask_Bx1 = jnp.full((history_BxL.shape[0], 1), self.mask_id, history_BxL.dtype)
    return self.encode(jnp.concatenate([history_BxL, mask_Bx1], axis=1))[:, -1]
