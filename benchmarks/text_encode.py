"""Encoding the MovieLens-100k item texts with all-MiniLM-L6-v2 on this machine: items/s and compile time
per batch size, bucketed (default) against one fixed padded length (largest batch size only), and the cost of
a cache hit. The steady time is the median of `--repeats` passes after the first (compiling) one.

    python benchmarks/text_encode.py [--batch-sizes 32 128] [--repeats 1] [--no-unbucketed]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
import numpy as np

from genrec.config import DataConfig
from genrec.data import load_dataset
from genrec.models.text import EmbeddingCache, TextEncoder
from genrec.models.text.cache import cache_key


def timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def measure(encoder: TextEncoder, texts, batch_size: int, repeats: int):
  """(first call seconds: compile + run, steady seconds per pass, embeddings)."""
  emb, first = timed(lambda: encoder.encode(texts, batch_size, progress=False))
  steady = statistics.median(
    timed(lambda: encoder.encode(texts, batch_size, progress=False))[1] for _ in range(repeats)
  )
  return first, steady, emb


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch-sizes", type=int, nargs="*", default=[32, 128])
  ap.add_argument("--repeats", type=int, default=1)
  ap.add_argument("--no-unbucketed", action="store_true", help="skip the one-fixed-length comparison")
  args = ap.parse_args()

  texts = load_dataset(DataConfig()).item_text[1:]
  encoder, load_s = timed(TextEncoder.minilm)
  lengths = np.array([len(x) for x in encoder.tokenize(texts)])
  counts = np.bincount(np.searchsorted(encoder.buckets, lengths), minlength=len(encoder.buckets))
  _, tok_s = timed(lambda: encoder.tokenize(texts))

  variants = [("bucketed " + "/".join(map(str, encoder.buckets)), encoder)]
  if not args.no_unbucketed:
    fixed = TextEncoder(encoder.model, encoder.tokenizer, max_length=128, buckets=(128,), identity=encoder.identity)
    variants.append(("one length, 128 (no text is longer)", fixed))

  rows, reference = [], None
  for name, enc in variants:
    for bs in args.batch_sizes if enc is encoder else args.batch_sizes[-1:]:
      first, steady, emb = measure(enc, texts, bs, args.repeats)
      reference = emb if reference is None else reference
      diff = float(np.abs(emb - reference).max())
      rows.append((name, bs, len(texts) / steady, steady, max(first - steady, 0.0), diff))

  with tempfile.TemporaryDirectory() as cache_dir:
    EmbeddingCache(cache_dir).save(cache_key(encoder.identity, texts), reference)
    _, hit_s = timed(lambda: encoder.encode(texts, args.batch_sizes[0], progress=False, cache=cache_dir))

  print(
    f"ml-100k item texts: {len(texts)}; tokens per text min/mean/max {lengths.min()}/{lengths.mean():.1f}/"
    f"{lengths.max()}; per bucket {dict(zip(encoder.buckets, counts.tolist()))}"
  )
  print(
    f"all-MiniLM-L6-v2 load {load_s:.2f} s, tokenize {tok_s * 1e3:.0f} ms; devices {jax.devices()}; "
    f"cache hit {hit_s * 1e3:.1f} ms\n"
  )
  print("| padding | batch | items/s | s / pass | compile s (first − steady) | max abs diff vs first row |")
  print("|---|---:|---:|---:|---:|---:|")
  for name, bs, ips, steady, compile_s, diff in rows:
    print(f"| {name} | {bs} | {ips:,.0f} | {steady:.2f} | {compile_s:.2f} | {diff:.1e} |")


if __name__ == "__main__":
  main()
