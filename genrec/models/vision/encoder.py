"""ImageEncoder: images (paths, bytes, PIL images or RGB arrays) → one vector each, with a CLIP image tower.

`encode(images)` decodes and preprocesses each chunk of `batch_size` images on the host (`genrec.data.images`),
pads the chunk to `batch_size` and runs one jitted forward, so every batch has one shape and compiles once.
Returns float32 [N, E] in input order and a validity mask [N]: an image that does not load (missing, corrupt,
wrong array shape) is skipped with a zero row and `valid=False`, counted, and summarised in one warning — a
bad image never stops a run. `pixels(images)` stops before the tower: uint8 [N, S, S, 3] resized and cropped,
for a tower that runs (and normalises) inside another model's forward pass.
"""

from __future__ import annotations

import dataclasses
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
      raise ValueError(
        f"preprocessing crops to {preprocessing.image_size} px but the model takes image_size={cfg.image_size}"
      )
    self.model, self.preprocessing = model, preprocessing
    graphdef, self._state = nnx.split(model)
    self._forward = jax.jit(lambda state, pixels: nnx.merge(graphdef, state).encode(pixels))

  @classmethod
  def from_pretrained(cls, path: str | os.PathLike, *, config: ClipVisionConfig | None = None) -> ImageEncoder:
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

  def encode(self, images: Sequence, batch_size: int = 32, *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [N, E], bool [N]) in input order; rows of images that did not load are zeros and False."""
    images, size = _as_list(images, batch_size), self.preprocessing.image_size
    out_NxE = np.zeros((len(images), self.dim), np.float32)

    def put(start, loaded):
      n = len(loaded.valid_N)
      pixels_BxSxSx3 = np.zeros((batch_size, size, size, 3), np.float32)
      pixels_BxSxSx3[:n] = loaded.pixels_NxSxSx3
      emb_BxE = np.asarray(self._forward(self._state, jnp.asarray(pixels_BxSxSx3)))
      out_NxE[start : start + n] = np.where(loaded.valid_N[:, None], emb_BxE[:n], 0.0)

    valid_N = _each_chunk(images, batch_size, self.preprocessing, put, progress, "encoding images")
    return out_NxE, valid_N

  def pixels(self, images: Sequence, batch_size: int = 256, *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, S, S, 3], bool [N]): each image resized and centre-cropped as `encode` does, not yet
    normalised (`preprocessing.mean`/`std` are for the consumer); rows that did not load are zeros and False."""
    return load_pixels(images, self.preprocessing, batch_size, progress=progress)


def load_pixels(
  images: Sequence,
  preprocessing: images_lib.ImageConfig,
  batch_size: int = 256,
  *,
  keep: bool = True,
  progress: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
  """`ImageEncoder.pixels` by preprocessing; with `keep=False` only which images load (None, bool [N]), in
  memory for one chunk at a time."""
  images, size = _as_list(images, batch_size), preprocessing.image_size
  # mean 0, std 1/255 turn load_images' normalisation into the 0..255 levels (exact after rounding).
  raw = dataclasses.replace(preprocessing, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
  out_NxSxSx3 = np.zeros((len(images), size, size, 3), np.uint8) if keep else None

  def put(start, loaded):
    if keep:
      levels = np.rint(loaded.pixels_NxSxSx3).clip(0, 255).astype(np.uint8)
      out_NxSxSx3[start : start + len(levels)] = levels

  return out_NxSxSx3, _each_chunk(images, batch_size, raw, put, progress, "preprocessing images")


def _as_list(images, batch_size: int) -> list:
  if isinstance(images, (str, bytes, os.PathLike, np.ndarray)):
    raise TypeError("encode takes a list of images; wrap a single image in a list")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  return list(images)


def _each_chunk(images: list, batch_size: int, preprocessing, put, progress: bool, desc: str) -> np.ndarray:
  """Loads `images` in chunks of `batch_size` and calls put(start, LoadedImages) on each; returns the validity
  mask [N]. The skipped images are summarised in one warning."""
  from tqdm.auto import tqdm

  valid_N = np.zeros(len(images), bool)
  counts, errors = {}, []
  with tqdm(total=len(images), desc=desc, unit="image", disable=not progress) as bar:
    for start in range(0, len(images), batch_size):
      chunk = images[start : start + batch_size]
      loaded = images_lib.load_images(chunk, preprocessing, start=start)
      put(start, loaded)
      valid_N[start : start + len(chunk)] = loaded.valid_N
      for reason, n in loaded.counts.items():
        counts[reason] = counts.get(reason, 0) + n
      errors += loaded.errors
      bar.update(len(chunk))
  if errors:
    skipped = {k: v for k, v in counts.items() if k != "ok" and v}
    warnings.warn(f"{len(errors)} of {len(images)} images skipped {skipped}; first: {errors[0]}", stacklevel=3)
  return valid_N
