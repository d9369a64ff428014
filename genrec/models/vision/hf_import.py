"""Hugging Face CLIP checkpoints (config.json + model.safetensors) → `Clip` / `ClipVision`, without torch.

Accepted: a `CLIPModel` folder (model_type "clip": `vision_model.*`, `text_model.*`, `visual_projection.weight`,
`text_projection.weight`, `logit_scale`) for `load_clip` and `load_clip_vision` (which then ignores the text
side), and a standalone `CLIPVisionModel` / `CLIPVisionModelWithProjection` folder (model_type
"clip_vision_model") for `load_clip_vision`; transformers >= 5 saves a bare `CLIPVisionModel` without the
`vision_model.` prefix (4.x did not), and both spellings load. Tensors are placed by the name tables below through
`genrec.models.hf.module_from_tensors`: missing, unexpected and mis-shaped tensors are errors that name them.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models.hf import (
  CONFIG,
  WEIGHTS,
  CheckpointError,
  find_file,
  module_from_tensors,
  read_json,
  read_safetensors,
)
from genrec.models.vision.clip import Clip, ClipConfig, ClipTextConfig, ClipVision, ClipVisionConfig

VISION_PREFIX, TEXT_PREFIX = "vision_model.", "text_model."
VISION_NAMES = {
  "embeddings.patch_embedding.weight": ("patch", "kernel"),
  "embeddings.class_embedding": ("cls",),
  "embeddings.position_embedding.weight": ("position", "embedding"),
  "pre_layrnorm.weight": ("pre_norm", "scale"),  # sic: HF's spelling
  "pre_layrnorm.bias": ("pre_norm", "bias"),
  "post_layernorm.weight": ("post_norm", "scale"),
  "post_layernorm.bias": ("post_norm", "bias"),
}
TEXT_NAMES = {
  "embeddings.token_embedding.weight": ("token", "embedding"),
  "embeddings.position_embedding.weight": ("position", "embedding"),
  "final_layer_norm.weight": ("final_norm", "scale"),
  "final_layer_norm.bias": ("final_norm", "bias"),
}
# Per layer: `encoder.layers.{i}.` + key ↦ ("layers", i) + path; the same in both towers.
LAYER_NAMES = {
  "self_attn.q_proj.weight": ("attn", "q", "kernel"),
  "self_attn.q_proj.bias": ("attn", "q", "bias"),
  "self_attn.k_proj.weight": ("attn", "k", "kernel"),
  "self_attn.k_proj.bias": ("attn", "k", "bias"),
  "self_attn.v_proj.weight": ("attn", "v", "kernel"),
  "self_attn.v_proj.bias": ("attn", "v", "bias"),
  "self_attn.out_proj.weight": ("attn", "o", "kernel"),
  "self_attn.out_proj.bias": ("attn", "o", "bias"),
  "layer_norm1.weight": ("norm1", "scale"),
  "layer_norm1.bias": ("norm1", "bias"),
  "mlp.fc1.weight": ("fc1", "kernel"),
  "mlp.fc1.bias": ("fc1", "bias"),
  "mlp.fc2.weight": ("fc2", "kernel"),
  "mlp.fc2.bias": ("fc2", "bias"),
  "layer_norm2.weight": ("norm2", "scale"),
  "layer_norm2.bias": ("norm2", "bias"),
}
# Registered buffers some exports keep; never parameters.
BUFFERS = (VISION_PREFIX + "embeddings.position_ids", TEXT_PREFIX + "embeddings.position_ids")
TEXT_SIDE = ("text_projection.weight", "logit_scale")


def _tower_table(prefix: str, names: dict, num_layers: int, projection: str | None) -> dict[str, tuple]:
  table = {prefix + k: v for k, v in names.items()}
  for i in range(num_layers):
    table.update({f"{prefix}encoder.layers.{i}.{k}": ("layers", i) + v for k, v in LAYER_NAMES.items()})
  if projection is not None:
    table[projection] = ("projection", "kernel")
  return table


def vision_table(cfg: ClipVisionConfig, prefix: str = VISION_PREFIX) -> dict[str, tuple]:
  """HF name → NNX path for every tensor of a vision tower (with `visual_projection.weight` if projected)."""
  return _tower_table(prefix, VISION_NAMES, cfg.layers, "visual_projection.weight" if cfg.projection_dim else None)


def text_table(cfg: ClipTextConfig) -> dict[str, tuple]:
  return _tower_table(TEXT_PREFIX, TEXT_NAMES, cfg.layers, "text_projection.weight" if cfg.projection_dim else None)


def clip_table(cfg: ClipConfig) -> dict[str, tuple]:
  table = {k: ("vision",) + v for k, v in vision_table(cfg.vision).items()}
  table.update({k: ("text",) + v for k, v in text_table(cfg.text).items()})
  table["logit_scale"] = ("logit_scale",)
  return table


def _describe(cfg) -> str:
  return (
    f"{type(cfg).__name__}(hidden={cfg.hidden}, layers={cfg.layers}, heads={cfg.heads}, "
    f"projection_dim={cfg.projection_dim})"
  )


def clip_from_tensors(
  tensors: dict[str, np.ndarray], cfg: ClipConfig, *, source: str = "checkpoint", dtype=jnp.float32
) -> Clip:
  """A `Clip` for `cfg` holding exactly `tensors` (HF `CLIPModel` names and layout)."""
  return module_from_tensors(
    lambda: Clip(cfg, rngs=nnx.Rngs(0)),
    tensors,
    clip_table(cfg),
    source=source,
    ignored=BUFFERS,
    dtype=dtype,
    what=f"ClipConfig(vision={_describe(cfg.vision)}, text={_describe(cfg.text)})",
  )


def vision_from_tensors(
  tensors: dict[str, np.ndarray],
  cfg: ClipVisionConfig,
  *,
  source: str = "checkpoint",
  dtype=jnp.float32,
  ignore_text: bool = False,
) -> ClipVision:
  """A `ClipVision` for `cfg` from vision-tower tensors, named with the `vision_model.` prefix or (a bare
  CLIPVisionModel saved by transformers >= 5) without it; `ignore_text` skips a full CLIPModel's text side."""
  prefix = VISION_PREFIX if any(k.startswith(VISION_PREFIX) for k in tensors) else ""
  ignored = [*BUFFERS, prefix + "embeddings.position_ids"]
  if ignore_text:
    ignored += [k for k in tensors if k.startswith(TEXT_PREFIX) or k in TEXT_SIDE]
  return module_from_tensors(
    lambda: ClipVision(cfg, rngs=nnx.Rngs(0)),
    tensors,
    vision_table(cfg, prefix),
    source=source,
    ignored=ignored,
    dtype=dtype,
    what=_describe(cfg),
  )


def read_config(path: str | os.PathLike) -> dict:
  """config.json next to the weights, with its model_type checked against what this module imports."""
  file = find_file(path, CONFIG, "the model's shape: vision_config, text_config, projection_dim")
  hf = read_json(file)
  kind = hf.get("model_type")
  if kind not in ("clip", "clip_vision_model"):
    raise CheckpointError(
      f"{file}: model_type {kind!r} is not supported; this importer reads CLIP checkpoints "
      "(model_type 'clip' = CLIPModel, 'clip_vision_model' = CLIPVisionModel[WithProjection])"
    )
  return hf


def _weights(path: Path) -> Path:
  if path.is_file():
    return path
  folder = path if path.is_dir() else path.parent
  if not (folder / WEIGHTS).is_file() and (folder / "pytorch_model.bin").is_file():
    raise CheckpointError(
      f"{folder} holds pytorch_model.bin only: pickled weights are never loaded; convert them to model.safetensors"
    )
  return find_file(path, WEIGHTS, "the weights")


def load_clip(path: str | os.PathLike, *, config: ClipConfig | None = None, dtype=jnp.float32) -> Clip:
  """Both towers and logit_scale from a HF `CLIPModel` folder (or its .safetensors file)."""
  path = Path(path).expanduser()
  weights = _weights(path)
  if config is None:
    hf = read_config(path)
    if hf["model_type"] != "clip":
      raise CheckpointError(f"{path} is a {hf['model_type']!r} checkpoint (one tower): use load_clip_vision")
    config = ClipConfig.from_hf_config(hf)
  return clip_from_tensors(read_safetensors(weights), config, source=str(weights), dtype=dtype)


def load_clip_vision(
  path: str | os.PathLike, *, config: ClipVisionConfig | None = None, dtype=jnp.float32
) -> ClipVision:
  """The image tower from a `CLIPModel` folder (with its visual_projection) or a `CLIPVisionModel` /
  `CLIPVisionModelWithProjection` folder (projected when its config or weights say so)."""
  path = Path(path).expanduser()
  weights = _weights(path)
  tensors = read_safetensors(weights)
  full = any(k.startswith(TEXT_PREFIX) for k in tensors)
  if config is None:
    hf = read_config(path)
    if hf["model_type"] == "clip":
      config = ClipConfig.from_hf_config(hf).vision
    else:
      projected = (
        "CLIPVisionModelWithProjection" in hf.get("architectures", []) or "visual_projection.weight" in tensors
      )
      config = ClipVisionConfig.from_hf_config(hf, projection_dim=hf.get("projection_dim", 512) if projected else None)
  return vision_from_tensors(tensors, config, source=str(weights), dtype=dtype, ignore_text=full)
