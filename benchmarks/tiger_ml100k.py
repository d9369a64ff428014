"""TIGER vs SASRec on MovieLens-100k, same protocol and table, plus the semantic-ID statistics.

    python benchmarks/tiger_ml100k.py [--models tiger sasrec] [--set ...] [--tiger-set model.tokenizer=rqkmeans:ml100k]
                                      [--seeds 0 1 2]

TIGER's tokenizer stage (text embeddings -> RQ-VAE / RQ-KMeans) runs first, or is reused from the stage
cache; its training time is reported separately from TIGER's. --seeds trains every model once per
trainer.seed (initialisation, dropout, batch order; the data split stays fixed) and adds a table of each
metric's mean and sample standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import genrec
from common import print_table, train_presets
from genrec import pipeline
from genrec.families.semantic_ids import read_semantic_ids


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=["tiger", "sasrec"])
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--tiger-set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-tiger-ml100k")
  ap.add_argument("--seeds", type=int, nargs="*", default=None, help="trainer.seed values (default: the preset's)")
  args = ap.parse_args()
  runs = []  # (seed, rows, workdir)
  for seed in args.seeds or [None]:
    sets = args.set + ([f"trainer.seed={seed}"] if seed is not None else [])
    workdir = args.workdir if seed is None else f"{args.workdir}/seed{seed}"
    rows, data = train_presets(args.models, sets, workdir, per_model={"tiger": args.tiger_set})
    print_table(rows, data, sets + args.tiger_set)
    runs.append((seed, rows, workdir))
  if len(runs) > 1:
    seed_table(runs)
  seed, rows, workdir = runs[0]
  for name, r in rows:
    if name != "tiger":
      continue
    cfg = genrec.load(f"{workdir}/tiger").config
    stage = pipeline.locate(cfg).folder("tokenizer")
    _, meta = read_semantic_ids(stage)
    tok = json.loads((stage / "results.json").read_text())
    st = meta["stats"]
    print(
      f"\ntokenizer {cfg.model.tokenizer} ({stage.name}): {meta['items']} items x {meta['digits']} digits; "
      f"collision rate before the extra digit {st['collision_rate']:.4f}, max items per tuple "
      f"{st['max_items_per_tuple']}, codebook usage per level {[round(u, 3) for u in st['usage']]}, "
      f"perplexity {[round(p, 1) for p in st['perplexity']]}; tokenizer train time {tok['train_seconds']} s"
    )
    print(
      f"TIGER invalid generations without constraints (top-20): "
      f"{r['test'].get('invalid_unconstrained@20', float('nan')):.4f}"
    )


def seed_table(runs) -> None:
  """Each model's test metrics as mean ± sample standard deviation over the seeds, and the per-seed NDCG@10."""
  metrics = ["recall@10", "ndcg@10", "mrr@10", "recall@5", "ndcg@5"]
  seeds = [seed for seed, _, _ in runs]
  print(f"\nOver trainer.seed in {seeds} (mean ± sample sd; test split):")
  print(
    "| model | "
    + " | ".join(m.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR") for m in metrics)
    + " | valid NDCG@10 | test NDCG@10 per seed |"
  )
  print("|---|" + "---|" * (len(metrics) + 2))
  for i, (name, _) in enumerate(runs[0][1]):
    results = [rows[i][1] for _, rows, _ in runs]
    cell = lambda vals: f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}"
    per_seed = ", ".join(f"{r['test']['ndcg@10']:.4f}" for r in results)
    print(
      f"| {name} | "
      + " | ".join(cell([r["test"][m] for r in results]) for m in metrics)
      + f" | {cell([r['valid']['ndcg@10'] for r in results])} | {per_seed} |"
    )


if __name__ == "__main__":
  main()
