"""CLIP (Radford et al., 2021) in NNX: a ViT image tower, a causal text tower, and the pair with its logit scale.

Protocol:
- `ClipVision(cfg).encode(pixels_BxHxWx3)` → pooled [B, E]: the [CLS] state after `post_layernorm`, through
  `visual_projection` when `cfg.projection_dim` is set, L2-normalised if `cfg.normalize`. With
  `return_tokens=True` also the patch tokens [B, N, D] (HF's `last_hidden_state[:, 1:]`, before post_layernorm).
  Pixels are channels-last float32, already resized/cropped/normalised (`genrec.data.images`).
- `ClipText(cfg).encode(ids_BxL, valid_BxL)` → pooled [B, E] at the end-of-text token (see `eos_positions`).
- `Clip(cfg).logits(pixels, ids, valid)` → logits_per_image [B_img, B_txt] = exp(logit_scale) · cos-similarity.
The module layout mirrors Hugging Face `CLIPModel`, so its safetensors import by a name table (`hf_import.py`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers
from genrec.models.text.bert import ACTIVATIONS as _BERT_ACTIVATIONS

ACTIVATIONS = {**_BERT_ACTIVATIONS, "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x)}
LEGACY_EOS_TOKEN_ID = 2


def _check_tower(name: str, hidden: int, heads: int, activation: str):
  if hidden % heads:
    raise ValueError(f"{name}: hidden={hidden} is not divisible by heads={heads}")
  if activation not in ACTIVATIONS:
    raise ValueError(f"{name}: activation {activation!r} is not one of {sorted(ACTIVATIONS)}")


# config field → HF config.json key, for the fields both towers have
TOWER_KEYS = {
  "hidden": "hidden_size",
  "layers": "num_hidden_layers",
  "heads": "num_attention_heads",
  "intermediate": "intermediate_size",
  "layer_norm_eps": "layer_norm_eps",
  "activation": "hidden_act",
}


def _from_hf(cls, hf: dict, keys: dict[str, str], projection_dim: int | None, overrides: dict):
  """`cls` with each field in `keys` read from `hf` (HF's default, which is `cls`'s default, when absent)."""
  defaults = cls()
  fields = {field: hf.get(key, getattr(defaults, field)) for field, key in keys.items()}
  return cls(**{**fields, "projection_dim": projection_dim, **overrides})


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
  """Defaults are HF `CLIPVisionConfig`'s (ViT-B/32 at 224 px)."""

  image_size: int = 224
  patch_size: int = 32
  num_channels: int = 3
  hidden: int = 768
  layers: int = 12
  heads: int = 12
  intermediate: int = 3072
  layer_norm_eps: float = 1e-5
  activation: str = "quick_gelu"
  projection_dim: int | None = None  # None: no visual_projection (a bare CLIPVisionModel)
  normalize: bool = True  # L2-normalise the pooled vector

  def __post_init__(self):
    _check_tower("ClipVisionConfig", self.hidden, self.heads, self.activation)
    if self.image_size % self.patch_size:
      raise ValueError(
        f"ClipVisionConfig: image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
      )

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @property
  def dim(self) -> int:
    """Width of the pooled output."""
    return self.projection_dim or self.hidden

  @classmethod
  def from_hf_config(cls, hf: dict, *, projection_dim: int | None = None, **overrides) -> ClipVisionConfig:
    """Reads a HF `vision_config` dict (or a `clip_vision_model` config.json); absent keys take HF's defaults."""
    return _from_hf(
      cls,
      hf,
      {**TOWER_KEYS, "image_size": "image_size", "patch_size": "patch_size", "num_channels": "num_channels"},
      projection_dim,
      overrides,
    )


@dataclasses.dataclass(frozen=True)
class ClipTextConfig:
  """Defaults are HF `CLIPTextConfig`'s (the ViT-B/32 text tower)."""

  vocab_size: int = 49408
  hidden: int = 512
  layers: int = 12
  heads: int = 8
  intermediate: int = 2048
  max_position: int = 77
  layer_norm_eps: float = 1e-5
  activation: str = "quick_gelu"
  eos_token_id: int = 49407
  projection_dim: int | None = None
  normalize: bool = True

  def __post_init__(self):
    _check_tower("ClipTextConfig", self.hidden, self.heads, self.activation)

  @property
  def dim(self) -> int:
    return self.projection_dim or self.hidden

  @classmethod
  def from_hf_config(cls, hf: dict, *, projection_dim: int | None = None, **overrides) -> ClipTextConfig:
    """Reads a HF `text_config` dict; absent keys take HF's defaults."""
    return _from_hf(
      cls,
      hf,
      {
        **TOWER_KEYS,
        "vocab_size": "vocab_size",
        "max_position": "max_position_embeddings",
        "eos_token_id": "eos_token_id",
      },
      projection_dim,
      overrides,
    )


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  vision: ClipVisionConfig = ClipVisionConfig(projection_dim=512)
  text: ClipTextConfig = ClipTextConfig(projection_dim=512)
  logit_scale_init: float = 2.6592  # log(1 / 0.07), HF's `logit_scale_init_value`

  def __post_init__(self):
    if self.vision.projection_dim is None or self.vision.projection_dim != self.text.projection_dim:
      raise ValueError(
        f"ClipConfig: both towers need the same projection_dim, got vision "
        f"{self.vision.projection_dim} and text {self.text.projection_dim}"
      )

  @classmethod
  def from_hf_config(cls, hf: dict) -> ClipConfig:
    """Reads a HF `CLIPModel` config.json: `text_config`, `vision_config`, `projection_dim`."""
    projection_dim = hf.get("projection_dim", 512)
    vision = hf.get("vision_config") or hf.get("vision_config_dict") or {}
    text = hf.get("text_config") or hf.get("text_config_dict") or {}
    return cls(
      vision=ClipVisionConfig.from_hf_config(vision, projection_dim=projection_dim),
      text=ClipTextConfig.from_hf_config(text, projection_dim=projection_dim),
      logit_scale_init=hf.get("logit_scale_init_value", 2.6592),
    )


def l2_normalize(x_BxD):
  """x / max(||x||, 1e-12), as torch.nn.functional.normalize."""
  return x_BxD / jnp.maximum(jnp.linalg.norm(x_BxD, axis=-1, keepdims=True), 1e-12)


class ClipLayer(nnx.Module):
  """Pre-norm: x += attn(LN1(x)); x += fc2(act(fc1(LN2(x)))). (The shared TransformerBlock fixes eps and GELU.)"""

  def __init__(self, cfg: ClipVisionConfig | ClipTextConfig, *, rngs: nnx.Rngs):
    self.norm1 = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.attn = layers.MultiHeadAttention(cfg.hidden, cfg.heads, rngs=rngs)
    self.norm2 = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.fc1 = layers.dense(cfg.hidden, cfg.intermediate, ("embed", "mlp"), rngs=rngs)
    self.fc2 = layers.dense(cfg.intermediate, cfg.hidden, ("mlp", "embed"), rngs=rngs)
    self.activation = cfg.activation

  def __call__(self, x_BxLxD, *, mask=None):
    x_BxLxD = x_BxLxD + self.attn(self.norm1(x_BxLxD), mask=mask)
    return x_BxLxD + self.fc2(ACTIVATIONS[self.activation](self.fc1(self.norm2(x_BxLxD))))


def _projection(cfg, rngs):
  if cfg.projection_dim is None:
    return None
  return layers.dense(cfg.hidden, cfg.projection_dim, ("embed", None), use_bias=False, rngs=rngs)


class ClipVision(nnx.Module):
  def __init__(self, cfg: ClipVisionConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    p, d = cfg.patch_size, cfg.hidden
    self.patch = nnx.Conv(
      cfg.num_channels,
      d,
      (p, p),
      strides=(p, p),
      padding="VALID",
      use_bias=False,
      kernel_init=layers.partitioned(nnx.initializers.lecun_normal(), (None, None, None, "embed")),
      rngs=rngs,
    )
    self.cls = layers.param(jax.random.normal(rngs.params(), (d,)) * d**-0.5, ("embed",))
    self.position = layers.Embed(cfg.num_patches + 1, d, (None, "embed"), stddev=0.02, rngs=rngs)
    self.pre_norm = layers.LayerNorm(d, eps=cfg.layer_norm_eps, rngs=rngs)
    self.layers = nnx.List([ClipLayer(cfg, rngs=rngs) for _ in range(cfg.layers)])
    self.post_norm = layers.LayerNorm(d, eps=cfg.layer_norm_eps, rngs=rngs)
    self.projection = _projection(cfg, rngs)

  def __call__(self, pixels_BxHxWxC: jax.Array) -> jax.Array:
    """Encoder states [B, 1 + N, D]: [CLS] then the patches in row-major order (HF's `last_hidden_state`)."""
    cfg = self.cfg
    expected = (cfg.image_size, cfg.image_size, cfg.num_channels)
    if tuple(pixels_BxHxWxC.shape[1:]) != expected:
      raise ValueError(
        f"pixels have shape {tuple(pixels_BxHxWxC.shape)}, expected [B, {', '.join(map(str, expected))}]"
        " (channels last; preprocess with genrec.data.images)"
      )
    patches_BxhxwxD = self.patch(pixels_BxHxWxC.astype(jnp.float32))
    b = patches_BxhxwxD.shape[0]
    patches_BxNxD = patches_BxhxwxD.reshape(b, -1, cfg.hidden)
    cls_Bx1xD = jnp.broadcast_to(self.cls[...][None, None], (b, 1, cfg.hidden))
    x_BxTxD = jnp.concatenate([cls_Bx1xD, patches_BxNxD], axis=1)
    x_BxTxD = self.pre_norm(x_BxTxD + self.position.embedding[...][None])
    for layer in self.layers:
      x_BxTxD = layer(x_BxTxD)
    return x_BxTxD

  def encode(self, pixels_BxHxWxC: jax.Array, *, return_tokens: bool = False):
    """Pooled [B, E] (E = projection_dim or hidden); with `return_tokens`, also the patch tokens [B, N, D]."""
    h_BxTxD = self(pixels_BxHxWxC)
    pooled_BxE = self.post_norm(h_BxTxD[:, 0])
    if self.projection is not None:
      pooled_BxE = self.projection(pooled_BxE)
    if self.cfg.normalize:
      pooled_BxE = l2_normalize(pooled_BxE)
    return (pooled_BxE, h_BxTxD[:, 1:]) if return_tokens else pooled_BxE


def eos_positions(ids_BxL: jax.Array, eos_token_id: int) -> jax.Array:
  """Where CLIP pools, as HF `CLIPTextTransformer`: configs saved before transformers PR #24773 carry
  eos_token_id=2 and pool at the largest token id (the original CLIP's EOT is the last vocabulary entry);
  otherwise the first position holding `eos_token_id` (padding may reuse the EOS id). A row without the EOS token
  pools at position 0, as in HF."""
  if eos_token_id == LEGACY_EOS_TOKEN_ID:
    return jnp.argmax(ids_BxL, axis=-1)
  return jnp.argmax(ids_BxL == eos_token_id, axis=-1)


class ClipText(nnx.Module):
  def __init__(self, cfg: ClipTextConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.token = layers.Embed(cfg.vocab_size, cfg.hidden, ("vocab", "embed"), stddev=0.02, rngs=rngs)
    self.position = layers.Embed(cfg.max_position, cfg.hidden, (None, "embed"), stddev=0.01, rngs=rngs)
    self.layers = nnx.List([ClipLayer(cfg, rngs=rngs) for _ in range(cfg.layers)])
    self.final_norm = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.projection = _projection(cfg, rngs)

  def __call__(self, ids_BxL: jax.Array, valid_BxL: jax.Array | None = None) -> jax.Array:
    """States [B, L, D] after `final_layer_norm`; causal, and padded keys (valid False) are masked."""
    length = ids_BxL.shape[1]
    if length > self.cfg.max_position:
      raise ValueError(
        f"token sequence length {length} exceeds max_position={self.cfg.max_position}; truncate the text"
      )
    x_BxLxD = self.token(ids_BxL) + self.position.embedding[...][None, :length]
    mask = layers.causal_mask(length)
    if valid_BxL is not None:
      mask = jnp.logical_and(mask, layers.padding_mask(valid_BxL.astype(bool)))
    for layer in self.layers:
      x_BxLxD = layer(x_BxLxD, mask=mask)
    return self.final_norm(x_BxLxD)

  def encode(self, ids_BxL: jax.Array, valid_BxL: jax.Array | None = None) -> jax.Array:
    """Pooled [B, E] at `eos_positions`, projected if configured, L2-normalised if `cfg.normalize`."""
    h_BxLxD = self(ids_BxL, valid_BxL)
    pos_B = eos_positions(ids_BxL, self.cfg.eos_token_id)
    pooled_BxE = h_BxLxD[jnp.arange(h_BxLxD.shape[0]), pos_B]
    if self.projection is not None:
      pooled_BxE = self.projection(pooled_BxE)
    if self.cfg.normalize:
      pooled_BxE = l2_normalize(pooled_BxE)
    return pooled_BxE


class Clip(nnx.Module):
  """Both towers (each with its projection) and the learned temperature `logit_scale` (a log scale)."""

  def __init__(self, cfg: ClipConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.vision = ClipVision(cfg.vision, rngs=rngs)
    self.text = ClipText(cfg.text, rngs=rngs)
    self.logit_scale = layers.param(jnp.asarray(cfg.logit_scale_init, jnp.float32), ())

  def logits(self, pixels_BxHxWxC, ids_BxL, valid_BxL=None) -> jax.Array:
    """logits_per_image [B_img, B_txt] (HF's `logits_per_text` is its transpose); embeddings are normalised here
    whatever the towers' `normalize` says."""
    image_BxE = l2_normalize(self.vision.encode(pixels_BxHxWxC))
    text_TxE = l2_normalize(self.text.encode(ids_BxL, valid_BxL))
    return jnp.exp(self.logit_scale[...]) * image_BxE @ text_TxE.T
