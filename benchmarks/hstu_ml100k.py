"""HSTU vs BERT4Rec vs SASRec on MovieLens-100k: leave-one-out, one table per candidate protocol (all_minus_seen,
then the same best checkpoints re-evaluated with every item a candidate, eval.candidates=all).

    python benchmarks/hstu_ml100k.py [--models hstu bert4rec sasrec] [--set trainer.steps=600 data.max_len=50]

Each model trains its `<model>:ml100k` preset through the one Trainer (best checkpoint by validation NDCG@10);
`--set` overrides apply to every model (same data and step budget).
"""

from __future__ import annotations

import argparse

from common import print_table, train_presets


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=["hstu", "bert4rec", "sasrec"])
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-hstu-ml100k")
  args = ap.parse_args()
  rows, data = train_presets(args.models, args.set, args.workdir, also_all=True)
  print_table(rows, data, args.set)


if __name__ == "__main__":
  main()
