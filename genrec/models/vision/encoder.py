"""ImageEncoder: images (paths, bytes, PIL images or RGB arrays) → one vector each, with a CLIP image tower.

`encode(images)` decodes and preprocesses each chunk of `batch_size` images on the host (`genrec.data.images`),
pads the chunk to `batch_size` and runs one jitted forward, so every batch has one shape and compiles once.
Returns float32 [N, E] in input order and a validity mask [N]: an image that does not load (missing, corrupt,
wrong array shape) is skipped with a zero row and `valid=False`, counted, and summarised in one warning — a
bad image never stops a run.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.data import images as images_lib
from genrec.models.hf import read_json
from genrec.models.vision import hf_import
from genrec.models.vision.clip import ClipVision, ClipVisionConfig

PREPROCESSOR = "preprocessor_config.json"


class ImageEncoder:
  def __init__(self, model: ClipVision, preprocessing: images_lib.ImageConfig | None = None):
    """`preprocessing` defaults to CLIP's at the model's image size."""
    cfg = model.cfg
    preprocessing = preprocessing or images_lib.ImageConfig(image_size=cfg.image_size)
    if preprocessing.image_size != cfg.image_size:
      raise ValueError(f"preprocessing crops to {preprocessing.image_size} px but the model takes "
                       f"image_size={cfg.image_size}")
    self.model, self.preprocessing = model, preprocessing
    graphdef, self._state = nnx.split(model)
    self._forward = jax.jit(lambda state, pixels: nnx.merge(graphdef, state).encode(pixels))

  @classmethod
  def from_pretrained(cls, path: str | os.PathLike, *, config: ClipVisionConfig | None = None) -> "ImageEncoder":
    """A HF CLIP folder (CLIPModel or CLIPVisionModel[WithProjection]); preprocessing from its
    preprocessor_config.json when present, else CLIP's defaults at the model's image size."""
    path = Path(path).expanduser()
    model = hf_import.load_clip_vision(path, config=config)
    folder = path if path.is_dir() else path.parent
    preprocessing = None
    if (folder / PREPROCESSOR).is_file():
      try:
        preprocessing = images_lib.ImageConfig.from_hf_preprocessor(read_json(folder / PREPROCESSOR))
      except ValueError as e:
        raise hf_import.CheckpointError(f"{folder / PREPROCESSOR}: {e}") from e
    return cls(model, preprocessing)

  @property
  def dim(self) -> int:
    return self.model.cfg.dim

  def encode(self, images: Sequence, batch_size: int = 32, *, progress: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [N, E], bool [N]) in input order; rows of images that did not load are zeros and False."""
    if isinstance(images, (str, bytes, os.PathLike, np.ndarray)):
      raise TypeError("encode takes a list of images; wrap a single image in a list")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    images = list(images)
    size = self.preprocessing.image_size
    out_NxE = np.zeros((len(images), self.dim), np.float32)
    valid_N = np.zeros(len(images), bool)
    counts, errors = {}, []
    with tqdm(total=len(images), desc="encoding images", unit="image", disable=not progress) as bar:
      for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        loaded = images_lib.load_images(chunk, self.preprocessing, start=start)
        pixels_BxSxSx3 = np.zeros((batch_size, size, size, 3), np.float32)
        pixels_BxSxSx3[:len(chunk)] = loaded.pixels_NxSxSx3
        emb_BxE = np.asarray(self._forward(self._state, jnp.asarray(pixels_BxSxSx3)))
        out_NxE[start:start + len(chunk)] = np.where(loaded.valid_N[:, None], emb_BxE[:len(chunk)], 0.0)
        valid_N[start:start + len(chunk)] = loaded.valid_N
        for reason, n in loaded.counts.items():
          counts[reason] = counts.get(reason, 0) + n
        errors += loaded.errors
        bar.update(len(chunk))
    if errors:
      skipped = {k: v for k, v in counts.items() if k != "ok" and v}
      warnings.warn(f"{len(errors)} of {len(images)} images skipped {skipped}; first: {errors[0]}", stacklevel=2)
    return out_NxE, valid_N
