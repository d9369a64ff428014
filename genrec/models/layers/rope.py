"""Rotary position embeddings in Hugging Face's "rotate_half" layout (Llama, Qwen2, Mistral, …).

Protocol: `inv_freq = inverse_frequencies(head_dim, RopeConfig(...))` once (NumPy, float32 [head_dim/2]), then
`apply_rope(x_BxLxHxK, positions_BxL, inv_freq)` rotates pairs (i, i + head_dim/2) — not interleaved pairs
(2i, 2i+1) as in the RoFormer paper; HF checkpoints permute q/k weights to this layout.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

SCALINGS = ("none", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  """theta: the base; scaling: "none" | "linear" (positions / factor) | "llama3" (Llama 3.1's per-frequency
  interpolation between `low_freq_factor` and `high_freq_factor` over `original_max_position`)."""

  theta: float = 10000.0
  scaling: str = "none"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position: int = 8192

  def __post_init__(self):
    if self.scaling not in SCALINGS:
      raise ValueError(f"RopeConfig: scaling {self.scaling!r} is not one of {SCALINGS}")
    if self.scaling == "llama3" and self.high_freq_factor <= self.low_freq_factor:
      raise ValueError(
        f"RopeConfig: llama3 scaling needs high_freq_factor ({self.high_freq_factor}) > "
        f"low_freq_factor ({self.low_freq_factor})"
      )

  @classmethod
  def from_hf(cls, hf: dict) -> RopeConfig:
    """From a HF config.json dict: `rope_theta` + `rope_scaling`, or transformers v5's `rope_parameters`."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
      return cls(theta=theta)
    if kind == "linear":
      return cls(theta=theta, scaling="linear", factor=float(params["factor"]))
    if kind == "llama3":
      return cls(
        theta=theta,
        scaling="llama3",
        factor=float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position=int(params["original_max_position_embeddings"]),
      )
    raise ValueError(
      f"config.json rope_scaling type {kind!r} is not supported; supported: 'default' (none), 'linear', 'llama3'"
    )

  def to_hf(self) -> dict:
    out: dict = {"rope_theta": self.theta}
    if self.scaling == "linear":
      out["rope_scaling"] = {"rope_type": "linear", "factor": self.factor}
    elif self.scaling == "llama3":
      out["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": self.factor,
        "low_freq_factor": self.low_freq_factor,
        "high_freq_factor": self.high_freq_factor,
        "original_max_position_embeddings": self.original_max_position,
      }
    return out


def inverse_frequencies(head_dim: int, cfg: RopeConfig) -> np.ndarray:
  """[head_dim / 2] float32: theta^(-2i / head_dim), rescaled per `cfg.scaling`."""
  if head_dim % 2:
    raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
  inv = 1.0 / cfg.theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if cfg.scaling == "linear":
    inv = inv / cfg.factor
  elif cfg.scaling == "llama3":
    wavelen = 2 * math.pi / inv
    low_wavelen = cfg.original_max_position / cfg.low_freq_factor  # longer than this: fully interpolated
    high_wavelen = cfg.original_max_position / cfg.high_freq_factor  # shorter than this: untouched
    smooth = (cfg.original_max_position / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor - cfg.low_freq_factor)
    mixed = (1 - smooth) * inv / cfg.factor + smooth * inv
    inv = np.where(wavelen > low_wavelen, inv / cfg.factor, np.where(wavelen < high_wavelen, inv, mixed))
  return inv.astype(np.float32)


def rotate_half(x):
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, inv_freq) -> jax.Array:
  """x * cos + rotate_half(x) * sin, angles computed in float32, result in x's dtype."""
  inv_1x1xK2 = jnp.asarray(inv_freq, jnp.float32)[None, None]
  angles_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * inv_1x1xK2
  angles_BxLx1xK = jnp.concatenate([angles_BxLxK2, angles_BxLxK2], axis=-1)[:, :, None]
  x = x_BxLxHxK.astype(jnp.float32)
  out = x * jnp.cos(angles_BxLx1xK) + rotate_half(x) * jnp.sin(angles_BxLx1xK)
  return out.astype(x_BxLxHxK.dtype)
