"""A user's own model, defined outside the genrec package: an item-to-next-item bigram table.

Registered under "toy_bigram" when imported (`genrec --import toymodel train toy_bigram:tiny ...`). The
next-item logits after item i are row i of a learned [N+1, N+1] table, so it can learn a successor map
exactly and nothing else. Batches as in genrec.models.sasrec (left-padded, 0 = padding).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.common import top_k_unseen
from genrec.models.layers import param
from genrec.registry import register


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  num_items: int = 0  # 0: taken from the dataset when training starts
  task: str = "next_item"  # the engine's next-item task: it calls loss, score and recommend

  def resolve(self, data, data_cfg) -> ToyConfig:
    del data_cfg
    return dataclasses.replace(self, num_items=self.num_items or data.num_items)


@register("toy_bigram", ToyConfig)
class ToyBigram(nnx.Module):
  def __init__(self, cfg: ToyConfig, *, rngs: nnx.Rngs):
    del rngs
    if cfg.num_items <= 0:
      raise ValueError(f"ToyConfig needs num_items > 0, got {cfg.num_items}")
    self.cfg = cfg
    n = cfg.num_items + 1
    self.table_NxN = param(jnp.zeros((n, n)), ("item", "vocab"))

  def _logits(self, ids):
    logits = jnp.take(self.table_NxN[...], ids, axis=0).astype(jnp.float32)
    return logits.at[..., 0].set(-jnp.inf)

  def loss(self, batch):
    logits_BxLxN = self._logits(batch["inputs"])
    targets_BxL = batch["targets"]
    weights = (targets_BxL > 0).astype(jnp.float32)
    logz = jax.nn.logsumexp(logits_BxLxN, axis=-1)
    gold = jnp.take_along_axis(logits_BxLxN, targets_BxL[..., None], axis=-1)[..., 0]
    loss = jnp.where(weights > 0, logz - gold, 0.0).sum() / jnp.maximum(weights.sum(), 1.0)
    return loss, {"loss": loss}

  def score(self, batch) -> jax.Array:
    """[B, N+1]: the row of the last history item (column 0 = -inf)."""
    return self._logits(batch["history"][:, -1])

  def recommend(self, batch, k: int):
    return top_k_unseen(self.score(batch), batch["seen"], k)


@register("toy_nan", ToyConfig)
class ToyNaN(ToyBigram):
  """Same parameters; the loss is NaN from the first step (exercises the trainer's NaN guard)."""

  def loss(self, batch):
    loss, _ = super().loss(batch)
    loss = loss * jnp.nan
    return loss, {"loss": loss}


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic dataset with a planted successor rule."""
  return ExperimentConfig(
    model=ToyConfig(),
    model_name="toy_bigram",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10),
    trainer=TrainerConfig(
      steps=60, batch_size=64, learning_rate=0.1, warmup_steps=5, eval_every=30, checkpoint_every=30, log_every=10
    ),
    eval=EvalConfig(batch_size=64),
  )


def nan_tiny() -> ExperimentConfig:
  return dataclasses.replace(tiny(), model_name="toy_nan", preset="nan")


PRESETS = {"tiny": tiny, "nan": nan_tiny}
