"""The synthetic multimodal catalogue (`data.dataset="synthetic_mm"`): the planted sequences of
`genrec.data.synthetic` (same users, items and item ids for the same config), with an image and a caption per
item whose class is aligned with the planted structure.

Item classes are `NUM_CLASSES` contiguous arcs of the hidden cycle (each genre arc holds two classes), so
items that co-occur in sequences (cycle neighbours) mostly share a class. Each item's image is a
`synthetic_images` picture of its class (own phase and noise); its text names the colour, pattern and genre.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from genrec.config import DataConfig
from genrec.data.synthetic import make_synthetic, planted_successor
from genrec.data.synthetic_images import class_style, make_synthetic_images
from genrec.data.types import SeqData

NAME = "synthetic_mm"
NUM_CLASSES = 8
IMAGE_SIZE = 32


def item_classes(cfg: DataConfig) -> np.ndarray:
  """class_N1[i]: the image class of item i (int32 [num_items+1], [0] == -1): its arc of the hidden cycle."""
  succ = planted_successor(cfg)
  n = cfg.synthetic_items
  classes = np.full(n + 1, -1, np.int32)
  item = 1
  for k in range(n):
    classes[item] = k * NUM_CLASSES // n
    item = succ[item]
  return classes


@functools.lru_cache(maxsize=4)
def _images(cfg: DataConfig) -> tuple[np.ndarray, tuple[str, ...]]:
  classes = item_classes(cfg)
  counts = np.bincount(classes[1:], minlength=NUM_CLASSES)
  # Balanced labels (i % C) with enough of each class; item i takes the next unused image of its class.
  pool = make_synthetic_images(NUM_CLASSES * int(counts.max()), num_classes=NUM_CLASSES, size=IMAGE_SIZE, seed=cfg.seed)
  by_class = [list(np.flatnonzero(pool.labels_N == k)) for k in range(NUM_CLASSES)]
  images = np.zeros((len(classes), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  captions = [""]
  for i in range(1, len(classes)):
    j = by_class[classes[i]].pop()
    images[i] = pool.images_NxHxWx3[j]
    captions.append(pool.texts[j])
  images.setflags(write=False)
  return images, tuple(captions)


def item_images(cfg: DataConfig) -> np.ndarray:
  """uint8 [num_items+1, 32, 32, 3] (row 0 black, never used); read-only."""
  return _images(cfg)[0]


def make_synthetic_mm(cfg: DataConfig) -> SeqData:
  base = make_synthetic(cfg)
  _, captions = _images(cfg)
  text = [""] + [
    f"Item {i}: {captions[i]}. Genres: {base.genre_names[int(np.argmax(base.item_genres[i]))]}."
    for i in range(1, base.num_items + 1)
  ]
  titles = [""] + [f"item {i} ({' '.join(class_style(int(k))[::2])})" for i, k in enumerate(item_classes(cfg)[1:], 1)]
  return dataclasses.replace(base, name=NAME, item_text=text, item_titles=titles)
