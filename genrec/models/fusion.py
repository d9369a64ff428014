"""Fusion of per-modality item vectors into one item vector, robust to missing modalities.

    fuser = Fusion(FusionConfig(variant="gated", dim=64), {"text": 384, "genre": 19}, rngs=rngs)
    item_BxD = fuser({"text": text_Bx384, "genre": genre_Bx19}, present_BxM)

`present_BxM` (bool, M = modalities in the order of the dims dict) says which inputs an item has. An absent
modality's input is replaced by zeros before anything reads it (`jnp.where`, so even NaN or Inf there cannot
leak), and every variant excludes it explicitly, so the output and its gradients do not depend on it. An item
with no modality at all is a data error caught where features are built; here it gets a finite vector.

Variants (`FusionConfig.variant`):
  concat  the masked inputs and the presence bits concatenated → 2-layer MLP.
  gated   per-modality projections to D; a learned score per projection, softmax over the present ones.
  xattn   one learned query token cross-attends over the present modality tokens (projection + type embedding),
          then a residual MLP.
  moe     UniSRec's mixture-of-experts adaptor per modality (K parametric whitenings (x - b_k) W_k mixed by a
          softmax gate on x), averaged over the present modalities. Meant for frozen tower outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers

VARIANTS = ("concat", "gated", "xattn", "moe")
NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  variant: str = "gated"
  dim: int = 64  # D: the fused item vector
  hidden_dim: int = 128  # concat / xattn MLP width
  num_heads: int = 2  # xattn
  num_experts: int = 4  # moe: K whitening experts per modality
  dropout: float = 0.0

  def validate(self) -> None:
    if self.variant not in VARIANTS:
      raise ValueError(f"fusion variant {self.variant!r} is not one of {VARIANTS}")
    if min(self.dim, self.hidden_dim, self.num_heads, self.num_experts) < 1:
      raise ValueError(f"FusionConfig needs dim, hidden_dim, num_heads, num_experts >= 1; got {self}")
    if self.variant == "xattn" and self.dim % self.num_heads:
      raise ValueError(f"fusion xattn: dim={self.dim} is not divisible by num_heads={self.num_heads}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"fusion dropout must be in [0, 1), got {self.dropout}")


def check_inputs(dims: Mapping[str, int], inputs: Mapping[str, jax.Array], present_BxM: jax.Array) -> None:
  """Shape checks at trace time: each modality present with the width the fuser was built for."""
  names = list(dims)
  missing = [m for m in names if m not in inputs]
  if missing:
    raise ValueError(
      f"fusion: no input for modality {missing[0]!r} (the fuser was built for {names}; got {sorted(inputs)})"
    )
  batch = present_BxM.shape[0]
  for m, d in dims.items():
    x = inputs[m]
    if x.ndim != 2 or x.shape[-1] != d:
      raise ValueError(
        f"fusion: modality {m!r} has input width {x.shape[-1] if x.ndim else '?'} "
        f"(shape {tuple(x.shape)}), but the fuser expects width {d}"
      )
    if x.shape[0] != batch:
      raise ValueError(f"fusion: modality {m!r} has {x.shape[0]} rows, the presence mask {batch}")
  if present_BxM.ndim != 2 or present_BxM.shape[1] != len(names):
    raise ValueError(
      f"fusion: presence mask of shape {tuple(present_BxM.shape)}; expected [B, {len(names)}] for modalities {names}"
    )


class MoEAdaptor(nnx.Module):
  """UniSRec's MoE adaptor: Σ_k softmax(x W_g)_k · (x − b_k) W_k, from D_in to D."""

  def __init__(self, d_in: int, d_out: int, num_experts: int, *, dropout: float, rngs: nnx.Rngs):
    init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=-2, out_axis=-1, batch_axis=(0,))
    self.w_KxIxO = layers.param(init(rngs.params(), (num_experts, d_in, d_out)), (None, None, "embed"))
    self.b_KxI = layers.param(jnp.zeros((num_experts, d_in)), (None, None))
    self.gate = layers.dense(
      d_in, num_experts, (None, None), use_bias=False, rngs=rngs, kernel_init=nnx.initializers.zeros_init()
    )
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x_BxI):
    x_BxI = self.dropout(x_BxI)
    centred_BxKxI = x_BxI[:, None, :] - self.b_KxI[...][None]
    experts_BxKxO = jnp.einsum("bki,kio->bko", centred_BxKxI, self.w_KxIxO[...])
    gates_BxK = jax.nn.softmax(self.gate(x_BxI), axis=-1)
    return jnp.einsum("bk,bko->bo", gates_BxK, experts_BxKxO)


class Fusion(nnx.Module):
  def __init__(self, cfg: FusionConfig, dims: Mapping[str, int], *, rngs: nnx.Rngs):
    cfg.validate()
    if not dims:
      raise ValueError("fusion needs at least one modality")
    bad = {m: d for m, d in dims.items() if d < 1}
    if bad:
      raise ValueError(f"fusion: modality widths must be >= 1, got {bad}")
    self.cfg, self.dims = cfg, dict(dims)
    names, D = list(dims), cfg.dim
    if cfg.variant == "concat":
      width = sum(dims.values()) + len(names)
      self.up = layers.dense(width, cfg.hidden_dim, (None, "mlp"), rngs=rngs)
      self.down = layers.dense(cfg.hidden_dim, D, ("mlp", "embed"), rngs=rngs)
    elif cfg.variant in ("gated", "xattn"):
      self.proj = nnx.Dict({m: layers.dense(d, D, (None, "embed"), rngs=rngs) for m, d in dims.items()})
      self.norm = layers.LayerNorm(D, rngs=rngs)
      if cfg.variant == "gated":
        self.score = layers.dense(D, 1, ("embed", None), rngs=rngs)
      else:
        self.type_MxD = layers.param(nnx.initializers.normal(0.02)(rngs.params(), (len(names), D)), (None, "embed"))
        self.query_D = layers.param(nnx.initializers.normal(0.02)(rngs.params(), (D,)), ("embed",))
        self.attn = layers.MultiHeadAttention(D, cfg.num_heads, dropout=cfg.dropout, rngs=rngs)
        self.mlp_norm = layers.LayerNorm(D, rngs=rngs)
        self.mlp = layers.MLP(D, cfg.hidden_dim, dropout=cfg.dropout, rngs=rngs)
    else:
      self.experts = nnx.Dict(
        {m: MoEAdaptor(d, D, cfg.num_experts, dropout=cfg.dropout, rngs=rngs) for m, d in dims.items()}
      )
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  @property
  def modalities(self) -> tuple[str, ...]:
    return tuple(self.dims)

  def __call__(self, inputs: Mapping[str, jax.Array], present_BxM: jax.Array) -> jax.Array:
    check_inputs(self.dims, inputs, present_BxM)
    present_BxM = present_BxM.astype(bool)
    xs = {m: jnp.where(present_BxM[:, i : i + 1], inputs[m].astype(jnp.float32), 0.0) for i, m in enumerate(self.dims)}
    return getattr(self, f"_{self.cfg.variant}")(xs, present_BxM)

  def _concat(self, xs, present_BxM):
    flat = jnp.concatenate([*xs.values(), present_BxM.astype(jnp.float32)], axis=-1)
    return self.down(self.dropout(jax.nn.gelu(self.up(self.dropout(flat)))))

  def _tokens(self, xs, present_BxM):
    """Projected modality tokens [B, M, D], zero where absent."""
    tokens = jnp.stack([self.proj[m](self.dropout(x)) for m, x in xs.items()], axis=1)
    return jnp.where(present_BxM[:, :, None], tokens, 0.0)

  def _gated(self, xs, present_BxM):
    tokens_BxMxD = self._tokens(xs, present_BxM)
    scores_BxM = self.score(jnp.tanh(tokens_BxMxD))[..., 0]
    gates_BxM = jax.nn.softmax(jnp.where(present_BxM, scores_BxM, NEG_INF), axis=-1)
    gates_BxM = jnp.where(present_BxM, gates_BxM, 0.0)
    return self.norm(jnp.einsum("bm,bmd->bd", gates_BxM, tokens_BxMxD))

  def _xattn(self, xs, present_BxM):
    tokens_BxMxD = self._tokens(xs, present_BxM) + self.type_MxD[...][None]
    tokens_BxMxD = self.norm(tokens_BxMxD)
    batch = present_BxM.shape[0]
    query_Bx1xD = jnp.broadcast_to(self.query_D[...].reshape(1, 1, -1), (batch, 1, self.cfg.dim))
    h_Bx1xD = query_Bx1xD + self.attn(query_Bx1xD, tokens_BxMxD, mask=layers.padding_mask(present_BxM))
    h_Bx1xD = h_Bx1xD + self.mlp(self.mlp_norm(h_Bx1xD))
    return h_Bx1xD[:, 0]

  def _moe(self, xs, present_BxM):
    outs_BxMxD = jnp.stack([self.experts[m](x) for m, x in xs.items()], axis=1)
    weight_BxM = present_BxM.astype(jnp.float32)
    weight_BxM = weight_BxM / jnp.maximum(weight_BxM.sum(-1, keepdims=True), 1.0)
    return jnp.einsum("bm,bmd->bd", weight_BxM, outs_BxMxD)
