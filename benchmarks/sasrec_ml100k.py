"""SASRec on MovieLens-100k: quality under both candidate protocols, speed and memory, as one table.

python benchmarks/sasrec_ml100k.py [--set trainer.steps=1500 ...] [--workdir runs/bench-sasrec]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import time

import genrec.configs
from genrec import config as config_lib
from genrec.data import load_dataset
from genrec.train.state import abstract_with
from genrec.train.tasks import get_task
from genrec.train.trainer import Trainer


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="sasrec:ml100k")
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-sasrec-ml100k")
  args = ap.parse_args()
  cfg = config_lib.override(genrec.configs.get(args.preset), args.set)
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  shutil.rmtree(args.workdir, ignore_errors=True)
  data = load_dataset(cfg.data)
  trainer = Trainer(cfg, args.workdir, data=data, resume=False)
  t0 = time.time()
  results = trainer.run()
  wall = time.time() - t0
  rows = [("all_minus_seen", results["test"])]
  eval_all = dataclasses.replace(cfg.eval, candidates="all")
  trainer.cfg = dataclasses.replace(trainer.cfg, eval=eval_all)
  trainer._evaluate = get_task(trainer.cfg, data).evaluator(trainer.placed)
  best = trainer.best.latest_step()
  params = trainer.best.restore(
    best,
    abstract_with(
      {"params": trainer.state["params"], "other": trainer.state["other"]},
      {"params": trainer.state_shardings["params"], "other": trainer.state_shardings["other"]},
    ),
  )["params"]
  test_all, _ = trainer.evaluate("test", params)
  rows.insert(0, ("all", test_all))
  steps = results["steps"]
  print(
    f"\nSASRec {args.preset} on {data.name}: {data.num_users} users, {data.num_items} items, leave-one-out; "
    f"overrides: {args.set or 'none'}"
  )
  print("| candidates | Recall@10 | NDCG@10 | MRR@10 | Recall@5 | NDCG@5 |")
  print("|---|---|---|---|---|---|")
  for name, m in rows:
    print(
      f"| {name} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@5']:.4f} "
      f"| {m['ndcg@5']:.4f} |"
    )
  seqs = steps * cfg.trainer.batch_size
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print("\n| steps | train wall (s) | s/step | seq/s | best step | time to best (s) | peak RSS (MB) |")
  print("|---|---|---|---|---|---|---|")
  print(
    f"| {steps} | {results['train_seconds']:.1f} | {results['train_seconds'] / max(steps, 1):.3f} | "
    f"{seqs / results['train_seconds']:.0f} | {results['best_step']} | {results['seconds_to_best']} | "
    f"{peak_mb:.0f} |"
  )
  print(f"(total including final evaluation: {wall:.1f} s)")


if __name__ == "__main__":
  main()
