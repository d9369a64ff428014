"""Inference helpers shared by models that score the whole catalogue."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def seen_mask(seen_BxS: jax.Array, num_columns: int) -> jax.Array:
  """Boolean [B, N] with True at every item id in `seen` (0 entries are padding and ignored)."""
  rows = jnp.arange(seen_BxS.shape[0])[:, None]
  mask = jnp.zeros((seen_BxS.shape[0], num_columns), bool).at[rows, seen_BxS].set(True)
  return mask.at[:, 0].set(True)


def top_k_unseen(scores_BxN: jax.Array, seen_BxS: jax.Array, k: int):
  """Top-k item ids and scores, never returning a seen item or the padding id."""
  masked = jnp.where(seen_mask(seen_BxS, scores_BxN.shape[1]), -jnp.inf, scores_BxN)
  scores, ids = jax.lax.top_k(masked, k)
  return ids, scores


class SequenceSizes:
  """Mixin for next-item model configs with `num_items` and `max_len` fields: 0 means "from the dataset"."""

  def resolve(self, data, data_cfg):
    return dataclasses.replace(
      self, num_items=self.num_items or data.num_items, max_len=self.max_len or data_cfg.max_len
    )

  def check_sizes(self) -> None:
    if self.num_items <= 0 or self.max_len <= 0:
      raise ValueError(
        f"{type(self).__name__} needs num_items and max_len > 0 (got {self.num_items}, "
        f"{self.max_len}); call cfg.resolve(data, data_cfg) or set them"
      )
