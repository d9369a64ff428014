"""TIGER vs SASRec on MovieLens-100k, same protocol and table, plus the semantic-ID statistics.

    python benchmarks/tiger_ml100k.py [--models tiger sasrec] [--set ...] [--tiger-set model.tokenizer=rqkmeans:ml100k]

TIGER's tokenizer stage (text embeddings -> RQ-VAE / RQ-KMeans) runs first, or is reused from the stage
cache; its training time is reported separately from TIGER's.
"""
from __future__ import annotations

import argparse
import json

from common import print_table, train_presets

import genrec
from genrec.train import stages


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=["tiger", "sasrec"])
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--tiger-set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-tiger-ml100k")
  args = ap.parse_args()
  rows, data = train_presets(args.models, args.set, args.workdir, per_model={"tiger": args.tiger_set})
  print_table(rows, data, args.set + args.tiger_set)
  for name, r in rows:
    if name != "tiger":
      continue
    cfg = genrec.load(f"{args.workdir}/tiger").config
    stage = stages.stage_dir(stages.stage_config(cfg.model.tokenizer, cfg.model.tokenizer_overrides, cfg.data))
    _, meta = stages.read_semantic_ids(stage)
    tok = json.loads((stage / "results.json").read_text())
    st = meta["stats"]
    print(f"\ntokenizer {cfg.model.tokenizer} ({stage.name}): {meta['items']} items x {meta['digits']} digits; "
          f"collision rate before the extra digit {st['collision_rate']:.4f}, max items per tuple "
          f"{st['max_items_per_tuple']}, codebook usage per level {[round(u, 3) for u in st['usage']]}, "
          f"perplexity {[round(p, 1) for p in st['perplexity']]}; tokenizer train time {tok['train_seconds']} s")
    print(f"TIGER invalid generations without constraints (top-20): "
          f"{r['test'].get('invalid_unconstrained@20', float('nan')):.4f}")


if __name__ == "__main__":
  main()
