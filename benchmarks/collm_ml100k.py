"""The LLM-CF family on MovieLens-100k under CoLLM's protocol, as one table (MF only so far; CoLLM and TALLRec
rows join as they land).

Every rating is an example, label = rating > 3, global time split 80/10/10; AUC and UAUC on valid and test.

    python benchmarks/collm_ml100k.py [--models mf] [--set trainer.steps=1000 ...] [--workdir runs/bench-collm]
"""
from __future__ import annotations

import argparse

from common import train_presets

MODELS = ("mf",)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=list(MODELS))
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-collm-ml100k")
  args = ap.parse_args()
  rows, _ = train_presets(args.models, args.set, args.workdir)
  p = rows[0][1]["protocol"]
  print(f"\n{p['dataset']}: {p['users']} users, {p['items']} items; split={p['split']}; label={p['label']}; "
        f"examples {p['examples']}; overrides: {args.set or 'none'}")
  print("| model | valid AUC | valid UAUC | test AUC | test UAUC | UAUC users (valid/test) | steps | best step "
        "| train s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, r in rows:
    v, t = r["valid"], r["test"]
    print(f"| {name} | {v['auc']:.4f} | {v['uauc']:.4f} | {t['auc']:.4f} | {t['uauc']:.4f} | "
          f"{v['uauc_users']}/{t['uauc_users']} | {r['steps']} | {r['best_step']} | {r['train_seconds']:.0f} |")


if __name__ == "__main__":
  main()
