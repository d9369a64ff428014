"""Synthetic images with planted classes and matching captions, for tests and the synthetic multimodal catalogue.

Class k has a colour (`COLOURS[k % 8]`) and a pattern (`PATTERNS[(k // 8 + k) % 4]`): up to 32 distinct classes,
and with at most 8 classes every class has its own colour, so the mean colour alone separates them. Each image
is the pattern drawn in the class colour over a darker version of it, at a random phase, plus Gaussian noise;
its caption names the colour and pattern in one of a few templates. Everything is a function of `seed`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from genrec import extras

COLOURS = (
  ("red", (220, 40, 40)),
  ("green", (40, 180, 60)),
  ("blue", (40, 70, 220)),
  ("yellow", (230, 210, 40)),
  ("purple", (140, 50, 180)),
  ("cyan", (40, 200, 210)),
  ("orange", (240, 140, 30)),
  ("grey", (128, 128, 128)),
)
PATTERNS = ("horizontal stripes", "vertical stripes", "a checkerboard", "a plain fill")
TEMPLATES = ("a {colour} picture with {pattern}", "{pattern} in {colour}", "an item in {colour}, {pattern}")
MAX_CLASSES = len(COLOURS) * len(PATTERNS)
BACKGROUND = 0.45  # background brightness relative to the class colour


@dataclasses.dataclass(frozen=True)
class SyntheticImages:
  images_NxHxWx3: np.ndarray  # uint8
  labels_N: np.ndarray  # int32 class ids
  texts: tuple[str, ...]  # one caption per image
  class_names: tuple[str, ...]  # "red horizontal stripes", …


def class_style(k: int) -> tuple[str, tuple[int, int, int], str]:
  """(colour name, RGB, pattern) of class k."""
  colour, rgb = COLOURS[k % len(COLOURS)]
  return colour, rgb, PATTERNS[(k // len(COLOURS) + k) % len(PATTERNS)]


def _pattern_mask(pattern: str, size: int, period: int, phase_y: int, phase_x: int) -> np.ndarray:
  ys, xs = np.mgrid[:size, :size]
  rows, cols = ((ys + phase_y) // period) % 2 == 0, ((xs + phase_x) // period) % 2 == 0
  if pattern == "horizontal stripes":
    return rows
  if pattern == "vertical stripes":
    return cols
  if pattern == "a checkerboard":
    return rows ^ cols
  return np.ones((size, size), bool)


def make_synthetic_images(
  num_images: int, *, num_classes: int = 4, size: int = 32, noise: float = 12.0, seed: int = 0
) -> SyntheticImages:
  """`num_images` images of size×size, classes balanced (i % num_classes, shuffled)."""
  if not 1 <= num_classes <= MAX_CLASSES:
    raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
  if num_images < 0 or size < 4:
    raise ValueError(f"need num_images >= 0 and size >= 4, got {num_images} and {size}")
  rng = np.random.default_rng(seed)
  labels_N = rng.permutation(np.arange(num_images) % num_classes).astype(np.int32)
  period = max(size // 8, 1)
  images = np.zeros((num_images, size, size, 3), np.uint8)
  texts = []
  for i, k in enumerate(labels_N):
    colour, rgb, pattern = class_style(int(k))
    phase_y, phase_x = rng.integers(0, 2 * period, 2)
    mask_HxW = _pattern_mask(pattern, size, period, phase_y, phase_x)
    fg_3 = np.asarray(rgb, np.float64)
    pixels = np.where(mask_HxW[..., None], fg_3.reshape(1, 1, 3), BACKGROUND * fg_3.reshape(1, 1, 3))
    pixels = pixels + rng.normal(0.0, noise, pixels.shape)
    images[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    texts.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(colour=colour, pattern=pattern))
  names = tuple(f"{c} {p}" for c, _, p in map(class_style, range(num_classes)))
  return SyntheticImages(images, labels_N, tuple(texts), names)


def save_pngs(images_NxHxWx3: np.ndarray, folder: str | os.PathLike) -> list[Path]:
  """Writes image i to folder/i.png; returns the paths in order."""
  Image = extras.need("PIL.Image", "item images")

  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  paths = [folder / f"{i}.png" for i in range(len(images_NxHxWx3))]
  for path, image in zip(paths, images_NxHxWx3):
    Image.fromarray(image).save(path)
  return paths
