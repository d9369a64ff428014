"""Items/s encoded on this machine by the multimodal towers: text (all-MiniLM-L6-v2 on ml-100k item texts),
image (a ViT-B/32-shaped CLIP vision tower at 224 px, random weights: the speed does not depend on them) and
the fusion variants of mmenc over their outputs. Steady = the median of `--repeats` passes after a first
(compiling) one; the image row counts host preprocessing (decode, resize to 224, crop, normalise) separately.

    python benchmarks/mm_encode.py [--texts 1682] [--images 256] [--fused 4096] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.config import DataConfig
from genrec.data import images as images_lib
from genrec.data import load_dataset
from genrec.data.synthetic_images import make_synthetic_images
from genrec.families.content.images import image_encoder
from genrec.models.mmenc import MMEnc, MMEncConfig
from genrec.models.text import TextEncoder

FUSED_DIMS = {"text": 384, "image": 768, "genre": 19}


def timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def steady(fn, repeats: int) -> tuple[float, float]:
  """(first call seconds, median seconds of the next `repeats`)."""
  _, first = timed(fn)
  return first, statistics.median(timed(fn)[1] for _ in range(repeats))


def fused_rows(n: int, batch_size: int, repeats: int):
  rng = np.random.default_rng(0)
  features = {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in FUSED_DIMS.items()}
  present = rng.random((n, len(FUSED_DIMS))) < 0.8
  present[:, 0] = True
  rows = []
  for variant in ("concat", "gated", "xattn", "moe"):
    cfg = MMEncConfig(
      modalities=tuple(FUSED_DIMS),
      input_dims=tuple(FUSED_DIMS.values()),
      fusion=variant,
      dim=64,
      num_experts=8,
      dropout=0.0,
    )
    graphdef, state = nnx.split(MMEnc(cfg, rngs=nnx.Rngs(0)))
    encode = jax.jit(lambda s, b: nnx.merge(graphdef, s).encode(b))

    def run():
      for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size) % n
        batch = {
          "item": jnp.asarray(idx + 1, jnp.int32),
          "present": jnp.asarray(present[idx]),
          **{m: jnp.asarray(f[idx]) for m, f in features.items()},
        }
        out = encode(state, batch)
      out.block_until_ready()

    first, t = steady(run, repeats)
    rows.append(
      (f"fused: {variant} over text 384 + image 768 + genre 19 → 64", n, batch_size, n / t, max(first - t, 0.0))
    )
  return rows


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--texts", type=int, default=1682, help="ml-100k item texts to encode")
  ap.add_argument("--images", type=int, default=256)
  ap.add_argument("--fused", type=int, default=4096, help="items through each fuser")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=2)
  args = ap.parse_args()
  rows = []

  texts = load_dataset(DataConfig()).item_text[1:][: args.texts]
  text_encoder, load_s = timed(TextEncoder.minilm)
  first, t = steady(lambda: text_encoder.encode(texts, args.batch_size, progress=False), args.repeats)
  rows.append(
    (
      "text: all-MiniLM-L6-v2 (6 layers, 384), bucketed lengths",
      len(texts),
      args.batch_size,
      len(texts) / t,
      max(first - t, 0.0),
    )
  )

  pictures = list(make_synthetic_images(args.images, num_classes=8, size=64).images_NxHxWx3)
  encoder = image_encoder("random:vit-b-32")
  first, t = steady(lambda: encoder.encode(pictures, args.batch_size, progress=False), args.repeats)
  _, prep = timed(lambda: images_lib.load_images(pictures, encoder.preprocessing))
  pixels = jnp.asarray(np.zeros((args.batch_size, 224, 224, 3), np.float32))
  fwd_first, fwd = steady(lambda: encoder._forward(encoder._state, pixels).block_until_ready(), args.repeats)
  rows.append(
    (
      "image: ViT-B/32 CLIP vision (12 layers, 768), 224 px, incl. preprocessing",
      len(pictures),
      args.batch_size,
      len(pictures) / t,
      max(first - t, 0.0),
    )
  )
  rows.append(
    ("image: preprocessing only (host: resize 64→224, crop, normalise)", len(pictures), "-", len(pictures) / prep, 0.0)
  )
  rows.append(
    ("image: tower forward only", args.batch_size, args.batch_size, args.batch_size / fwd, max(fwd_first - fwd, 0.0))
  )
  rows += fused_rows(args.fused, 256, args.repeats)

  print(f"devices: {jax.devices()}; MiniLM load {load_s:.1f} s; steady = median of {args.repeats} passes\n")
  print("| tower | items | batch | items/s | compile s (first − steady) |")
  print("|---|---:|---:|---:|---:|")
  for name, n, bs, ips, compile_s in rows:
    print(f"| {name} | {n} | {bs} | {ips:,.1f} | {compile_s:.2f} |")
  text_ips, image_ips = rows[0][3], rows[1][3]
  slowest_fuser = min(r[3] for r in rows[4:])
  total = 1.0 / (1.0 / text_ips + 1.0 / image_ips + 1.0 / slowest_fuser)
  print(f"\ntext + image + fusion end to end (one after the other, slowest fuser): {total:,.1f} items/s")


if __name__ == "__main__":
  main()
