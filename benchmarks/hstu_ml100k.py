"""HSTU vs BERT4Rec vs SASRec on MovieLens-100k: one protocol (leave-one-out, all_minus_seen), one table.

    python benchmarks/hstu_ml100k.py [--models hstu bert4rec sasrec] [--set trainer.steps=600 data.max_len=50]

Each model trains its `<model>:ml100k` preset through the one Trainer (best checkpoint by validation NDCG@10);
`--set` overrides apply to every model (same data and step budget).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil

import genrec.configs
from genrec import config as config_lib
from genrec.data import load_dataset
from genrec.train.trainer import Trainer


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=["hstu", "bert4rec", "sasrec"])
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-hstu-ml100k")
  args = ap.parse_args()
  rows, data = [], None
  for name in args.models:
    cfg = config_lib.override(genrec.configs.get(f"{name}:ml100k"), args.set)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
    data = data if data is not None else load_dataset(cfg.data)
    workdir = f"{args.workdir}/{name}"
    shutil.rmtree(workdir, ignore_errors=True)
    results = Trainer(cfg, workdir, data=data, resume=False).run()
    rows.append((name, results))
    print(f"{name}: test ndcg@10={results['test']['ndcg@10']:.4f} in {results['train_seconds']:.0f} s", flush=True)
  protocol = rows[0][1]["protocol"]
  print(f"\n{data.name}: {data.num_users} users, {data.num_items} items; split={protocol['split']}, "
        f"candidates={protocol['candidates']}; overrides: {args.set or 'none'}")
  print("| model | Recall@10 (=HR@10) | NDCG@10 | MRR@10 | valid NDCG@10 | steps | best step | train (s) | s/step |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, r in rows:
    t, v = r["test"], r["valid"]
    print(f"| {name} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} | {v['ndcg@10']:.4f} | "
          f"{r['steps']} | {r['best_step']} | {r['train_seconds']:.0f} | {r['train_seconds'] / r['steps']:.3f} |")


if __name__ == "__main__":
  main()
