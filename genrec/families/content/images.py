"""Image towers and item images for the content family: the frozen (or tuned) CLIP vision tower of
`model.image_encoder` and the image source of every item of a dataset with images."""

from __future__ import annotations

import sys

from flax import nnx

from genrec.config import ConfigError
from genrec.data.errors import DataError


def image_encoder(spec: str):
  """random:tiny (32 px, 2 layers, width 64) | random:vit-b-32 (ViT-B/32 at 224 px) — seeded, untrained — or a
  Hugging Face CLIP folder."""
  from genrec.models.vision import ClipVision, ClipVisionConfig, ImageEncoder

  shapes = {
    "random:tiny": ClipVisionConfig(image_size=32, patch_size=8, hidden=64, layers=2, heads=2, intermediate=128),
    "random:vit-b-32": ClipVisionConfig(),
  }
  if spec in shapes:
    return ImageEncoder(ClipVision(shapes[spec], rngs=nnx.Rngs(0)))
  if spec.startswith("random:"):
    raise ConfigError(f"model.image_encoder={spec!r}: random towers are {sorted(shapes)}")
  return ImageEncoder.from_pretrained(spec)


def item_images(data_cfg) -> list:
  """One image source per item id 0..N (entry 0 unused), what `ImageEncoder.encode` reads: synthetic_mm's
  generated images, or for amazon-* the files `genrec datasets prepare NAME --images` cached (read offline:
  nothing is downloaded here). An Amazon item with no usable image (no URL, 404, broken, not fetched) gets
  None, so its image modality is absent; those skips are counted on stderr."""
  name = data_cfg.dataset
  if name == "synthetic_mm":
    from genrec.data.synthetic_mm import item_images as synthetic_images

    return list(synthetic_images(data_cfg))
  if not name.startswith("amazon-"):
    raise DataError(
      f"dataset {name!r} has no item images; the 'image' modality needs a dataset with images "
      "(synthetic_mm, amazon-*) — drop 'image' from model.modalities"
    )
  from genrec.data import load_dataset
  from genrec.data.amazon import item_images as amazon_images
  from genrec.data.image_cache import cache_folder

  cached = amazon_images(load_dataset(data_cfg), data_cfg.data_dir, offline=True, progress=False)
  counts = {**cached.counts, "no_url": cached.counts["no_url"] - 1}  # entry 0 (padding) has no URL
  with_url = len(cached.paths) - 1 - counts["no_url"]
  prepare = f"`genrec datasets prepare {name} --images`"
  if with_url and counts["not_cached"] == with_url:
    raise DataError(
      f"the item images of {name} were never fetched (none is in {cache_folder(name)}): run {prepare} "
      "once to download them into the image cache, or drop 'image' from model.modalities"
    )
  skipped = {k: v for k, v in counts.items() if k != "ok" and v}
  if skipped:
    again = f"; run {prepare} again to fetch the ones not cached" if counts["not_cached"] else ""
    print(
      f"item images of {name}: {counts['ok']} of {len(cached.paths) - 1} items have a cached image; the "
      f"others have no image modality ({', '.join(f'{k} {v}' for k, v in skipped.items())}{again})",
      file=sys.stderr,
    )
  return cached.paths
