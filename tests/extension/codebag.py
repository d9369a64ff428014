"""A user's own semantic-ID retriever, defined outside genrec: the README's worked example (one model file, this
one, and one config file, codebag_configs.py).

"codebag" reads a history of items through their semantic IDs only: an item is the sum of its codes'
embeddings (one table per code level), the last one is mapped to a logit per (level, code), and an item's score
is the sum of the logits of its codes. Everything else — the tokenizer stage, its item -> code table, which items
training saw, evaluation — comes with the task its config names, "semantic_id_retrieval": the model provides
`set_item_codes` (genrec.models.protocols.SemanticIDRetriever), its config the fields of SemanticIDConfig.
Batches are the next-item task's (left-padded, 0 = padding).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import layers
from genrec.models.common import SequenceSizes, top_k_unseen
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class CodeBagConfig(SequenceSizes):
  num_items: int = 0  # 0: from the dataset
  max_len: int = 0  # 0: from data.max_len
  code_levels: int = 1  # C and K: sized from the tokenizer's table by with_semantic_ids
  codebook_size: int = 2
  dim: int = 32
  tokenizer: str = ""  # the tokenizer stage, e.g. "rqkmeans:tiny"
  tokenizer_overrides: tuple[str, ...] = ()
  semantic_ids_version: str = ""  # pinned when training starts
  task: str = "semantic_id_retrieval"

  def with_semantic_ids(self, table_NxC, version: str) -> CodeBagConfig:
    table = np.asarray(table_NxC)
    return dataclasses.replace(
      self, code_levels=int(table.shape[1]), codebook_size=int(table.max()) + 1, semantic_ids_version=version
    )


@register("codebag", CodeBagConfig)
class CodeBag(nnx.Module):
  def __init__(self, cfg: CodeBagConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    C, K = cfg.code_levels, cfg.codebook_size
    self.code_emb = layers.param(nnx.initializers.normal(0.1)(rngs.params(), (C, K, cfg.dim)), (None, None, "embed"))
    self.head = layers.dense(cfg.dim, C * K, ("embed", "vocab"), rngs=rngs)
    self.item_codes = nnx.Variable(jnp.zeros((cfg.num_items + 1, C), jnp.int32))
    self.trained = nnx.Variable(jnp.ones((cfg.num_items + 1,), bool))

  def set_item_codes(self, codes, trained=None) -> None:
    codes = np.asarray(codes, np.int32)
    self.item_codes[...] = jnp.asarray(
      codes
      if len(codes) == self.cfg.num_items + 1
      else np.concatenate([np.zeros((1, codes.shape[1]), np.int32), codes])
    )
    if trained is not None:
      self.trained[...] = jnp.asarray(trained, bool)

  def _item_scores(self, items) -> jax.Array:
    """[..., N+1]: after each item of `items`, the score of every item (column 0 = -inf)."""
    C, K = self.cfg.code_levels, self.cfg.codebook_size
    codes_NxC = self.item_codes[...]
    levels_1xC = jnp.arange(C)[None, :]
    rep = self.code_emb[...][levels_1xC, codes_NxC[items]].sum(-2)  # [..., D]
    logits = self.head(rep).reshape(*rep.shape[:-1], C, K)  # [..., C, K]
    scores = logits[..., levels_1xC, codes_NxC].sum(-1)  # [..., N+1]
    return scores.at[..., 0].set(-jnp.inf)

  def loss(self, batch):
    scores_BxLxN = self._item_scores(batch["inputs"])
    targets, weights = batch["targets"], (batch["targets"] > 0).astype(jnp.float32)
    logz = jax.nn.logsumexp(jnp.where(self.trained[...][None, None, :], scores_BxLxN, -jnp.inf), axis=-1)
    gold = jnp.take_along_axis(scores_BxLxN, targets[..., None], axis=-1)[..., 0]
    loss = jnp.where(weights > 0, logz - gold, 0.0).sum() / jnp.maximum(weights.sum(), 1.0)
    return loss, {"loss": loss}

  def score(self, batch) -> jax.Array:
    return self._item_scores(batch["history"][:, -1])

  def recommend(self, batch, k: int):
    return top_k_unseen(self.score(batch), batch["seen"], k)
