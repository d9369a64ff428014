"""SASRec on MovieLens-100k: quality under both candidate protocols, speed and memory, as tables.

python benchmarks/sasrec_ml100k.py [--seeds 0,1,2] [--set trainer.steps=1500 ...] [--workdir runs/bench-sasrec]

Each seed S trains the preset with trainer.seed=S and data.seed=S (initialisation, dropout, batch order and
training windows; the leave-one-out split stays fixed), keeps the best checkpoint by validation NDCG@10 and
evaluates it twice: all_minus_seen (the user's earlier items are not candidates) and all (every item is).
With more than one seed, a mean ± sample sd row follows the per-seed rows.
"""

from __future__ import annotations

import argparse
import resource

import genrec.configs
from common import METRICS, evaluate_best, mean_sd, protocol_line, train
from genrec import config as config_lib
from genrec.data import load_dataset

PROTOCOLS = ("all_minus_seen", "all")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="sasrec:ml100k")
  ap.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-sasrec-ml100k")
  args = ap.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  base = config_lib.override(genrec.configs.get(args.preset), args.set)
  data = load_dataset(base.data)
  runs = []  # (seed, {protocol: {"valid", "test"}}, results)
  for seed in seeds:
    cfg = config_lib.override(base, [f"trainer.seed={seed}", f"data.seed={seed}"])
    trainer, results = train(cfg, f"{args.workdir}/seed{seed}", data)
    if cfg.eval.candidates != "all_minus_seen":
      raise SystemExit(f"{args.preset}: expected eval.candidates=all_minus_seen, got {cfg.eval.candidates}")
    by_protocol = {"all_minus_seen": {"valid": results["valid"], "test": results["test"]}}
    by_protocol["all"] = evaluate_best(trainer, "all")
    runs.append((seed, by_protocol, results))
    print(
      f"seed {seed}: test NDCG@10 all_minus_seen {results['test']['ndcg@10']:.4f}, "
      f"all {by_protocol['all']['test']['ndcg@10']:.4f}; best step {results['best_step']} "
      f"at {results['seconds_to_best']} s",
      flush=True,
    )

  protocol = runs[0][2]["protocol"]
  print(f"\nSASRec {args.preset}; overrides: {args.set or 'none'}; best checkpoint by validation NDCG@10")
  for name in PROTOCOLS:
    print(f"\n{protocol_line(data, protocol, name)}; test split")
    print("| seed | Recall@10 | NDCG@10 | MRR@10 | Recall@5 | NDCG@5 | valid NDCG@10 | best step | time to best (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, by_protocol, r in runs:
      t, v = by_protocol[name]["test"], by_protocol[name]["valid"]
      cells = " | ".join(f"{t[m]:.4f}" for m in METRICS)
      print(f"| {seed} | {cells} | {v['ndcg@10']:.4f} | {r['best_step']} | {r['seconds_to_best']} |")
    if len(runs) > 1:
      cells = " | ".join(mean_sd([p[name]["test"][m] for _, p, _ in runs]) for m in METRICS)
      valid = mean_sd([p[name]["valid"]["ndcg@10"] for _, p, _ in runs])
      to_best = mean_sd([r["seconds_to_best"] for _, _, r in runs], digits=1)
      print(f"| mean ± sd | {cells} | {valid} | | {to_best} |")

  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print("\n| seed | steps | train wall (s) | s/step | seq/s | best step | time to best (s) | peak RSS (MB) |")
  print("|---|---|---|---|---|---|---|---|")
  for seed, _, r in runs:
    steps, wall = r["steps"], r["train_seconds"]
    seqs = steps * base.trainer.batch_size
    print(
      f"| {seed} | {steps} | {wall:.1f} | {wall / max(steps, 1):.3f} | {seqs / wall:.0f} | {r['best_step']} | "
      f"{r['seconds_to_best']} | {peak_mb:.0f} |"
    )


if __name__ == "__main__":
  main()
