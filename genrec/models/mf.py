"""Matrix factorisation for click-through prediction: p(click | u, i) = sigmoid(<p_u, q_i> + b_u + b_i + b).

The collaborative model of the LLM-CF family: CoLLM maps its user/item embeddings into an LLM, so a finished
run exports them (`user_embeddings`/`item_embeddings`, written by the pointwise task as the run artifact "cf",
genrec.families.llm_cf.cf). Batches (task "pointwise", genrec.data.pointwise):
  {"user": int32[B], "item": int32[B], "label": float32[B] (training only), "history": int32[B, H] (unused)}
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import ConfigError
from genrec.models import layers
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class MFConfig:
  num_users: int = 0  # 0: taken from the dataset when training starts
  num_items: int = 0  # 0: taken from the dataset
  dim: int = 64
  l2: float = 0.0  # weight of the batch mean of ||p_u||^2 + ||q_i||^2 added to the loss
  init_std: float = 0.1

  task: str = "pointwise"

  def resolve(self, view, data_cfg):
    """Sizes from the data; a size set by hand must match it."""
    del data_cfg
    for name in ("num_users", "num_items"):
      mine, theirs = getattr(self, name), getattr(view, name)
      if mine and mine != theirs:
        raise ConfigError(f"model.{name}={mine}, but {view.name} has {theirs}; leave it 0 to size from the data")
    return dataclasses.replace(self, num_users=view.num_users, num_items=view.num_items)


def binary_cross_entropy(logits_B: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Per-example -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], stable for large |x|."""
  return jnp.maximum(logits_B, 0) - logits_B * labels_B + jnp.log1p(jnp.exp(-jnp.abs(logits_B)))


@register("mf", MFConfig)
class MF(nnx.Module):
  def __init__(self, cfg: MFConfig, *, rngs: nnx.Rngs):
    if cfg.num_users <= 0 or cfg.num_items <= 0:
      raise ValueError(
        f"MFConfig needs num_users and num_items > 0 (got {cfg.num_users}, {cfg.num_items}); "
        "call cfg.resolve(data, data_cfg) or set them"
      )
    self.cfg = cfg
    self.user_emb = layers.Embed(cfg.num_users, cfg.dim, (None, "embed"), rngs=rngs, stddev=cfg.init_std)
    self.item_emb = layers.Embed(cfg.num_items + 1, cfg.dim, ("item", "embed"), rngs=rngs, stddev=cfg.init_std)
    self.user_bias = layers.param(jnp.zeros((cfg.num_users,)), (None,))
    self.item_bias = layers.param(jnp.zeros((cfg.num_items + 1,)), ("item",))
    self.bias = layers.param(jnp.zeros(()), ())

  def logits(self, batch) -> jax.Array:
    user_B, item_B = batch["user"], batch["item"]
    dot_B = jnp.einsum("bd,bd->b", self.user_emb(user_B), self.item_emb(item_B))
    return dot_B + self.user_bias[...][user_B] + self.item_bias[...][item_B] + self.bias[...]

  def predict(self, batch) -> jax.Array:
    """Click probabilities float32 [B]."""
    return jax.nn.sigmoid(self.logits(batch).astype(jnp.float32))

  def loss(self, batch):
    logits_B = self.logits(batch).astype(jnp.float32)
    labels_B = batch["label"].astype(jnp.float32)
    bce = binary_cross_entropy(logits_B, labels_B).mean()
    metrics = {"bce": bce, "accuracy": jnp.mean(((logits_B > 0) == (labels_B > 0.5)).astype(jnp.float32))}
    if not self.cfg.l2:
      return bce, metrics
    norms_B = jnp.sum(jnp.square(self.user_emb(batch["user"])), -1) + jnp.sum(
      jnp.square(self.item_emb(batch["item"])), -1
    )
    return bce + self.cfg.l2 * norms_B.mean(), metrics

  # The pointwise task exports what these return to RUN/cf/ when training finishes.
  def user_embeddings(self) -> jax.Array:
    """[U, D], row u = user index u."""
    return self.user_emb.embedding[...]

  def item_embeddings(self) -> jax.Array:
    """[N+1, D], row i = item id i (row 0 = padding)."""
    return self.item_emb.embedding[...]
