"""ContentRec: a UniSRec-style sequential retriever over frozen item content vectors (Hou et al., 2022).

Items are represented only through their content (text-tower or fused multimodal embeddings, `data.item_embeddings`):
a mixture-of-experts adaptor (UniSRec's parametric whitening, `fusion.MoEAdaptor`) maps each item's frozen
vector to the model width; a causal transformer reads the history of adapted vectors; the next item is scored
by cosine similarity / temperature against every item's adapted vector. No parameter is per item, so an item
that never occurred in training — a cold-start item, or one added later with `genrec add-items` — is scored
like any other as soon as its content vector is in the table.

Non-trainable state, checkpointed with the model: `content` [N+1, D_c] (row 0 = padding, zeros) and `trained`
bool [N+1], the items the training softmax ranges over (those in some training sequence: items held out of
training are neither positives nor negatives). Both are loaded by the next-item task from
`data.item_embeddings` (`set_item_content`). Batches are SASRec's:
  train: {"inputs": int32[B, L], "targets": int32[B, L]}    targets[t] = the item after inputs[t]
  eval:  {"history": int32[B, L], "seen": int32[B, S]}       score the item after history[-1]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import layers
from genrec.models.common import SequenceSizes, top_k_unseen
from genrec.models.fusion import MoEAdaptor
from genrec.models.sequential import causal_stack, softmax_cross_entropy
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class ContentRecConfig(SequenceSizes):
  num_items: int = 0  # 0: taken from the dataset
  max_len: int = 0  # 0: taken from data.max_len
  content_dim: int = 0  # width of the frozen content vectors; 0: from data.item_embeddings at training
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  dropout: float = 0.2
  emb_dropout: float = 0.2
  num_experts: int = 8  # MoE adaptor experts (UniSRec: 8)
  temperature: float = 0.07

  task: str = "content_retrieval"  # genrec.families.content.retrieval: loads data.item_embeddings (set_item_content)

  def with_item_content(self, table_NxD) -> ContentRecConfig:
    """Sizes content_dim from the content table (rows = items 0..N, row 0 padding)."""
    return dataclasses.replace(self, content_dim=int(np.shape(table_NxD)[1]))


class ItemContentError(ValueError):
  pass


@register("contentrec", ContentRecConfig)
class ContentRec(nnx.Module):
  def __init__(self, cfg: ContentRecConfig, *, rngs: nnx.Rngs):
    cfg.check_sizes()
    if cfg.content_dim < 1 or cfg.temperature <= 0:
      raise ValueError(
        f"ContentRecConfig needs content_dim >= 1 and temperature > 0 (got {cfg.content_dim}, "
        f"{cfg.temperature}); content_dim is the width of data.item_embeddings"
      )
    self.cfg = cfg
    n = cfg.num_items
    self.content = nnx.Variable(
      jnp.zeros((n + 1, cfg.content_dim), jnp.float32), out_sharding=("item", None), eager_sharding=False
    )  # split over the mesh's item axis, like CF tables
    self.trained = nnx.Variable(jnp.ones((n + 1,), bool).at[0].set(False))
    self.adaptor = MoEAdaptor(cfg.content_dim, cfg.dim, cfg.num_experts, dropout=cfg.emb_dropout, rngs=rngs)
    self.pos_emb = layers.Embed(cfg.max_len, cfg.dim, (None, "embed"), rngs=rngs)
    self.emb_dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
    self.blocks = nnx.List(
      [
        layers.TransformerBlock(cfg.dim, cfg.num_heads, cfg.mlp_dim, dropout=cfg.dropout, rngs=rngs)
        for _ in range(cfg.num_layers)
      ]
    )
    self.final_norm = layers.LayerNorm(cfg.dim, rngs=rngs)

  def set_item_content(self, table, trained=None) -> None:
    """Loads the content table [N+1, D_c] (row 0 ignored) and, optionally, the items seen in training [N+1]."""
    n, d = self.cfg.num_items, self.cfg.content_dim
    table = np.asarray(table, np.float32)
    if table.shape != (n + 1, d):
      raise ItemContentError(
        f"the item content table has shape {table.shape}; this model expects [{n + 1}, {d}] "
        f"(items 0..{n}, row 0 = padding; content_dim={d})"
      )
    bad = np.flatnonzero(~np.isfinite(table[1:]).all(1))
    if len(bad):
      raise ItemContentError(f"the content vectors of items {(bad[:5] + 1).tolist()} are not finite")
    self.content[...] = jnp.asarray(table).at[0].set(0.0)
    if trained is not None:
      self.trained[...] = jnp.asarray(np.asarray(trained, bool)).at[0].set(False)

  def item_vectors(self):
    """Adapted item vectors [N+1, D] (row 0 is padding: never scored)."""
    return self.adaptor(self.content[...])

  def encode(self, ids_BxL, items_NxD):
    """Hidden state at every position, [B, L, D]; position t sees items <= t."""
    length = ids_BxL.shape[1]
    x = jnp.take(items_NxD, ids_BxL, axis=0) + self.pos_emb(jnp.arange(length))[None]
    return causal_stack(x, ids_BxL > 0, self.emb_dropout, self.blocks, self.final_norm)

  def logits(self, h, items_NxD, allowed_N):
    """Cosine similarity / temperature against every item, [..., N+1]; columns not `allowed` at -inf."""
    logits = jnp.einsum("...d,nd->...n", _unit(h), _unit(items_NxD)).astype(jnp.float32)
    logits = logits / self.cfg.temperature
    return jnp.where(allowed_N.reshape((1,) * (logits.ndim - 1) + (-1,)), logits, -jnp.inf)

  def loss(self, batch):
    items = self.item_vectors()
    targets_BxL = batch["targets"]
    logits = self.logits(self.encode(batch["inputs"], items), items, self.trained[...])
    loss, count = softmax_cross_entropy(logits, targets_BxL, (targets_BxL > 0).astype(jnp.float32))
    return loss, {"loss": loss, "tokens": count}

  def score(self, batch) -> jax.Array:
    """Scores of every item (column 0 = padding, -inf) as the next item after `history`: [B, N+1]."""
    items = self.item_vectors()
    allowed = jnp.arange(self.cfg.num_items + 1) > 0
    return self.logits(self.encode(batch["history"], items)[:, -1], items, allowed)

  def recommend(self, batch, k: int):
    return top_k_unseen(self.score(batch), batch["seen"], k)


def _unit(x):
  """x / ||x|| along the last axis, with a finite gradient at x = 0 (the padding row's vector)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-12))
