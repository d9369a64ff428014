"""Image tower: CLIP (ViT image tower, causal text tower) with Hugging Face safetensors import, and a batched
image encoder."""

from genrec.models.hf import CheckpointError
from genrec.models.vision.clip import Clip, ClipConfig, ClipText, ClipTextConfig, ClipVision, ClipVisionConfig
from genrec.models.vision.encoder import ImageEncoder
from genrec.models.vision.hf_import import clip_from_tensors, load_clip, load_clip_vision, vision_from_tensors

__all__ = [
  "CheckpointError",
  "Clip",
  "ClipConfig",
  "ClipText",
  "ClipTextConfig",
  "ClipVision",
  "ClipVisionConfig",
  "ImageEncoder",
  "clip_from_tensors",
  "load_clip",
  "load_clip_vision",
  "vision_from_tensors",
]
