"""Shared by models over item-id sequences (SASRec, HSTU, BERT4Rec): the item table, the tied output head, the
losses, and catalogue scoring.

Ids: 0 = padding, 1..num_items = the catalogue, num_items+1.. = special tokens (BERT4Rec's mask). Scores
cover columns 0..num_items, column 0 (padding) being -inf. The table's rows are padded to a multiple of
`ROW_MULTIPLE` so that the item axis divides over the devices of a mesh (a 10M-item table sharded 8 ways);
the training loss runs over the padded logits with the padding columns at -inf, so the sharded logits are
never sliced or gathered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers
from genrec.models.common import top_k_unseen

LOSSES = ("softmax", "sampled_softmax")
ROW_MULTIPLE = 128


def l2_normalize(x, eps: float = 1e-6):
  """x / max(||x||, eps) along the last axis."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def masked_mean(nll, weights):
  count = weights.sum()
  return jnp.where(weights > 0, nll, 0.0).sum() / jnp.maximum(count, 1.0), count


def softmax_cross_entropy(logits_BxLxN, targets_BxL, weights_BxL):
  """Mean over weighted positions of -log softmax(logits)[target]; returns (loss, token count)."""
  logz = jax.nn.logsumexp(logits_BxLxN, axis=-1)
  gold = jnp.take_along_axis(logits_BxLxN, targets_BxL[..., None], axis=-1)[..., 0]
  return masked_mean(logz - gold, weights_BxL)


def sampled_softmax_cross_entropy(h_BxLxD, pos_BxLxD, targets_BxL, neg_ids, neg_E, weights_BxL, temperature):
  """Sampled softmax: the target against sampled negatives, logits = <h, e> / temperature.

  neg_ids/neg_E: [B, L, N] / [B, L, N, D] (per position, as the reference) or [N] / [N, D] (shared by the batch).
  A negative equal to the target is dropped from that position's softmax. Inputs are used as given (the caller
  L2-normalises). Returns (loss, token count).
  """
  pos_BxL = jnp.einsum("bld,bld->bl", h_BxLxD, pos_BxLxD) / temperature
  if neg_ids.ndim == 1:
    neg_BxLxN = jnp.einsum("bld,nd->bln", h_BxLxD, neg_E) / temperature
    neg_ids = neg_ids[None, None, :]
  else:
    neg_BxLxN = jnp.einsum("bld,blnd->bln", h_BxLxD, neg_E) / temperature
  neg_BxLxN = jnp.where(neg_ids == targets_BxL[..., None], -jnp.inf, neg_BxLxN)
  logits = jnp.concatenate([pos_BxL[..., None], neg_BxLxN], axis=-1).astype(jnp.float32)
  return masked_mean(jax.nn.logsumexp(logits, axis=-1) - logits[..., 0], weights_BxL)


def causal_stack(x_BxLxD, valid_BxL, emb_dropout, blocks, final_norm):
  """Embedding dropout, causal transformer blocks over the real positions, final norm: [B, L, D]; position t
  sees positions <= t, and padding positions stay zero through every block. Shared by SASRec and ContentRec."""
  length = x_BxLxD.shape[1]
  x = emb_dropout(x_BxLxD) * valid_BxL[..., None]
  mask = layers.causal_mask(length) & layers.padding_mask(valid_BxL)
  for block in blocks:
    x = block(x, mask=mask) * valid_BxL[..., None]
  return final_norm(x)


class ItemSequenceModel(nnx.Module):
  """Base: subclasses set `self.cfg`, call `init_items`, and define `query(batch) -> [B, D]`, the hidden state
  that scores the next item for an eval batch."""

  def init_items(self, num_items: int, dim: int, *, extra_tokens: int = 0, stddev: float | None = None, rngs: nnx.Rngs):
    self.num_items = num_items
    rows = -(-(num_items + 1 + extra_tokens) // ROW_MULTIPLE) * ROW_MULTIPLE
    self.item_emb = layers.Embed(rows, dim, ("item", "embed"), rngs=rngs, stddev=stddev)

  @property
  def sampled(self) -> bool:
    return getattr(self.cfg, "loss", "softmax") == "sampled_softmax"

  def item_logits(self, h, *, padded: bool = False):
    """h [..., D] → [..., N+1] scores against the catalogue (tied table; L2-normalised and / temperature under
    the sampled-softmax loss, so scoring matches training). padded: all table rows, every column that is not
    a catalogue item at -inf."""
    table = self.item_emb.embedding[...].astype(h.dtype)
    if self.sampled:
      h, table = l2_normalize(h) / self.cfg.temperature, l2_normalize(table)
    logits = jnp.einsum("...d,nd->...n", h, table).astype(jnp.float32)
    column = jnp.arange(table.shape[0]).reshape((1,) * (logits.ndim - 1) + (-1,))
    logits = jnp.where((column == 0) | (column > self.num_items), -jnp.inf, logits)
    return logits if padded else logits[..., : self.num_items + 1]

  def next_item_loss(self, h_BxLxD, targets_BxL, weights_BxL, rng=None, logit_bias=None):
    """The configured loss of predicting targets from hidden states; metrics {"loss", "tokens"}. logit_bias
    (full softmax only): added to the padded logits [B, L, rows]."""
    if not self.sampled:
      logits = self.item_logits(h_BxLxD, padded=True)
      logits = logits if logit_bias is None else logits + logit_bias
      loss, count = softmax_cross_entropy(logits, targets_BxL, weights_BxL)
    else:
      n = self.cfg.num_negatives
      shape = (n,) if self.cfg.shared_negatives else (*targets_BxL.shape, n)
      neg_ids = jax.random.randint(rng, shape, 1, self.num_items + 1, dtype=jnp.int32)
      neg_E = l2_normalize(self.item_emb(neg_ids)).astype(h_BxLxD.dtype)  # only the sampled rows
      pos_E = l2_normalize(self.item_emb(targets_BxL)).astype(h_BxLxD.dtype)
      loss, count = sampled_softmax_cross_entropy(
        l2_normalize(h_BxLxD), pos_E, targets_BxL, neg_ids, neg_E, weights_BxL, self.cfg.temperature
      )
    return loss, {"loss": loss, "tokens": count}

  def query(self, batch) -> jax.Array:
    raise NotImplementedError

  def score(self, batch) -> jax.Array:
    """Scores of every item (column 0 = padding, -inf) as the next item after `history`: [B, N+1]."""
    return self.item_logits(self.query(batch))

  def recommend(self, batch, k: int):
    return top_k_unseen(self.score(batch), batch["seen"], k)


def check_loss_config(cfg, name: str) -> None:
  """Clear errors for the loss fields shared by sequence-model configs."""
  loss = getattr(cfg, "loss", "softmax")
  if loss not in LOSSES:
    raise ValueError(f"{name}.loss must be one of {LOSSES}, got {loss!r}")
  if loss == "sampled_softmax" and (cfg.num_negatives < 1 or cfg.temperature <= 0):
    raise ValueError(
      f"{name}: sampled_softmax needs num_negatives >= 1 and temperature > 0 "
      f"(got {cfg.num_negatives}, {cfg.temperature})"
    )
