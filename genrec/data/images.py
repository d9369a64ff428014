"""Image preprocessing for the image tower, on the host (NumPy + Pillow), as Hugging Face `CLIPImageProcessor`.

An image source is a file path, encoded bytes (PNG, JPEG, …), a `PIL.Image`, or an RGB uint8 array [H, W, 3];
None stands for an item without an image (a missing image).
`preprocess` runs: decode → RGB uint8 (other modes are composited onto white, as HF `convert_to_rgb`) → resize
the shortest side to `resize_shortest` (bicubic, the long side truncated to an int, as HF) → centre crop to
`image_size` (offsets rounded down) → scale to [0, 1] → normalise by `mean`/`std`. Output: float32 [S, S, 3],
channels last (HF gives [3, S, S]).

Two entry points: `preprocess`/`preprocess_batch` raise an `ImageError` naming the item; `load_images` is what
pipelines use: it never raises for a bad image, it skips it and counts why (a validity mask and counts).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrec import extras
from genrec.data.errors import DataError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageError(DataError):
  """An image that cannot be used; the message names the item or file."""


class MissingImageError(ImageError):
  """The file does not exist or cannot be opened."""


class CorruptImageError(ImageError):
  """The bytes do not decode as an image (truncated, not an image format, too large)."""


class BadArrayError(ImageError):
  """An array passed directly is not RGB uint8 [H, W, 3]."""


REASONS = {MissingImageError: "missing", CorruptImageError: "corrupt", BadArrayError: "bad_array"}


@dataclasses.dataclass(frozen=True)
class ImageConfig:
  """Defaults are CLIP's (openai/clip-vit-*: 224 px, its mean/std)."""

  image_size: int = 224  # the centre crop, square
  resize_shortest: int | None = None  # None: image_size
  mean: tuple[float, float, float] = CLIP_MEAN
  std: tuple[float, float, float] = CLIP_STD

  def __post_init__(self):
    if self.image_size < 1 or self.shortest < self.image_size:
      raise ValueError(
        f"ImageConfig: need 1 <= image_size <= resize_shortest, got {self.image_size} and {self.shortest}"
      )
    if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
      raise ValueError(f"ImageConfig: mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")

  @property
  def shortest(self) -> int:
    return self.resize_shortest or self.image_size

  @classmethod
  def from_hf_preprocessor(cls, hf: dict) -> ImageConfig:
    """Reads a HF `preprocessor_config.json` (CLIPImageProcessor) as a dict."""
    size, crop = hf.get("size", 224), hf.get("crop_size", 224)
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    if isinstance(crop, dict):
      if crop.get("height") != crop.get("width"):
        raise ValueError(f"preprocessor crop_size {crop} is not square; only square crops are supported")
      crop = crop["height"]
    if shortest is None or hf.get("resample", 3) != 3 or not hf.get("do_center_crop", True):
      raise ValueError(f"preprocessor config {hf} is not CLIP's (shortest_edge resize, bicubic, centre crop)")
    return cls(
      image_size=int(crop),
      resize_shortest=int(shortest),
      mean=tuple(hf.get("image_mean", CLIP_MEAN)),
      std=tuple(hf.get("image_std", CLIP_STD)),
    )


def _source_name(source, name: str | None) -> str:
  if name is not None:
    return name
  return f"image file {source}" if isinstance(source, (str, os.PathLike)) else "image"


def decode(source, name: str | None = None) -> np.ndarray:
  """RGB uint8 [H, W, 3] from any image source; raises an ImageError naming `name` (or the file)."""
  Image = extras.need("PIL.Image", "item images")

  what = _source_name(source, name)
  if source is None:
    raise MissingImageError(f"{what}: no image (None)")
  if isinstance(source, np.ndarray):
    if source.ndim != 3 or source.shape[-1] != 3:
      channels = source.shape[-1] if source.ndim == 3 else "no channel axis"
      raise BadArrayError(
        f"{what}: array of shape {source.shape} has {channels} channels; pass RGB [H, W, 3] "
        "uint8 arrays (give the file or bytes to have RGBA/L/P images converted)"
      )
    if source.dtype != np.uint8:
      raise BadArrayError(f"{what}: array dtype is {source.dtype}; pass uint8 values in [0, 255]")
    if min(source.shape[:2]) < 1:
      raise BadArrayError(f"{what}: array of shape {source.shape} is empty")
    return source
  if isinstance(source, Image.Image):
    image = source
  else:
    if isinstance(source, (str, os.PathLike)):
      try:
        data = Path(source).read_bytes()
      except OSError as e:
        raise MissingImageError(f"{what}: cannot be read ({e.strerror or e})") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
      data = bytes(source)
    else:
      raise BadArrayError(
        f"{what}: {type(source).__name__} is not an image source (path, bytes, PIL image or uint8 array)"
      )
    try:
      image = Image.open(io.BytesIO(data))
      image.load()  # decode now: a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
      raise CorruptImageError(f"{what}: not a readable image ({len(data)} bytes; {e})") from None
  return np.asarray(_to_rgb(image), np.uint8)


def _to_rgb(image):
  """As HF `convert_to_rgb`: transparent pixels become white, palette/grey images become RGB."""
  Image = extras.need("PIL.Image", "item images")

  if image.mode == "RGB":
    return image
  rgba = image.convert("RGBA")
  return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255)), rgba).convert("RGB")


def resize_shortest(rgb_HxWx3: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize so the shortest side is `size`; the long side is int(size * long / short), as HF."""
  Image = extras.need("PIL.Image", "item images")

  h, w = rgb_HxWx3.shape[:2]
  if h <= w:
    new_h, new_w = size, int(size * w / h)
  else:
    new_h, new_w = int(size * h / w), size
  if (new_h, new_w) == (h, w):
    return rgb_HxWx3
  return np.asarray(Image.fromarray(rgb_HxWx3).resize((new_w, new_h), Image.Resampling.BICUBIC))


def center_crop(x_HxWxC: np.ndarray, size: int) -> np.ndarray:
  """The central size×size window, offsets rounded down (as HF); the image must be at least that large."""
  h, w = x_HxWxC.shape[:2]
  top, left = (h - size) // 2, (w - size) // 2
  return x_HxWxC[top : top + size, left : left + size]


def normalize(rgb_HxWx3: np.ndarray, cfg: ImageConfig) -> np.ndarray:
  """uint8 → float32 (x / 255 - mean) / std per channel."""
  mean_1x1x3 = np.asarray(cfg.mean, np.float32).reshape(1, 1, 3)
  std_1x1x3 = np.asarray(cfg.std, np.float32).reshape(1, 1, 3)
  return ((rgb_HxWx3.astype(np.float32) / 255.0 - mean_1x1x3) / std_1x1x3).astype(np.float32)


def preprocess(source, cfg: ImageConfig, name: str | None = None) -> np.ndarray:
  """float32 [S, S, 3] ready for the image tower; raises an ImageError naming `name` (or the file)."""
  rgb = decode(source, name)
  return normalize(center_crop(resize_shortest(rgb, cfg.shortest), cfg.image_size), cfg)


def preprocess_batch(sources: Sequence, cfg: ImageConfig) -> np.ndarray:
  """float32 [N, S, S, 3]; the first bad image raises, named `images[i]` (and its file)."""
  out = np.zeros((len(sources), cfg.image_size, cfg.image_size, 3), np.float32)
  for i, source in enumerate(sources):
    out[i] = preprocess(source, cfg, _item_name(i, source))
  return out


def _item_name(i: int, source) -> str:
  return f"images[{i}] ({source})" if isinstance(source, (str, os.PathLike)) else f"images[{i}]"


@dataclasses.dataclass
class LoadedImages:
  pixels_NxSxSx3: np.ndarray  # float32; zeros where not valid
  valid_N: np.ndarray  # bool
  counts: dict[str, int]  # "ok" and one entry per reason in REASONS
  errors: list[str]  # one message per skipped image, in input order


def load_images(sources: Sequence, cfg: ImageConfig, *, start: int = 0) -> LoadedImages:
  """Every image that loads, preprocessed; the others skipped and counted by reason. Never raises for a bad
  image (other failures, e.g. out of memory, propagate). `start` offsets the `images[i]` names in messages."""
  n = len(sources)
  loaded = LoadedImages(
    np.zeros((n, cfg.image_size, cfg.image_size, 3), np.float32),
    np.zeros(n, bool),
    {"ok": 0, **{reason: 0 for reason in REASONS.values()}},
    [],
  )
  for i, source in enumerate(sources):
    try:
      loaded.pixels_NxSxSx3[i] = preprocess(source, cfg, _item_name(start + i, source))
    except ImageError as e:
      loaded.counts[REASONS.get(type(e), "bad_array")] += 1
      loaded.errors.append(str(e))
      continue
    loaded.valid_N[i] = True
    loaded.counts["ok"] += 1
  return loaded
