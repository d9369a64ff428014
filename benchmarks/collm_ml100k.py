"""The LLM-CF family on MovieLens-100k under CoLLM's protocol, as one table: MF alone, TALLRec (text-only
prompts + LoRA) and CoLLM-MF (the same prompts with user/item placeholders carrying MF's embeddings), both on
the tiny RANDOM LLM — an LLM that knows nothing, so any gain of CoLLM over TALLRec comes from the CF tokens.

Every rating is an example, label = rating > 3, global time split 80/10/10; AUC and UAUC on valid and test.
CoLLM reads the embeddings of the MF row's own run (`model.cf_run=WORKDIR/mf`) when MF is in the table.

    python benchmarks/collm_ml100k.py [--models mf tallrec collm] [--set trainer.steps=1000 ...]
        [--workdir runs/bench-collm]
"""
from __future__ import annotations

import argparse

from common import train_presets

MODELS = ("mf", "tallrec", "collm")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=list(MODELS))
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-collm-ml100k")
  args = ap.parse_args()
  per_model = {"collm": [f"model.cf_run={args.workdir}/mf"]} if "mf" in args.models else {}
  models = sorted(args.models, key=lambda m: m != "mf")          # MF first: CoLLM reads its run
  rows, _ = train_presets(models, args.set, args.workdir, per_model=per_model)
  p = rows[0][1]["protocol"]
  print(f"\n{p['dataset']}: {p['users']} users, {p['items']} items; split={p['split']}; label={p['label']}; "
        f"examples {p['examples']}; overrides: {args.set or 'none'}")
  for name, r in rows:
    prompt = r["protocol"].get("prompt")
    if prompt:
      print(f"{name}: prompt {prompt['text']!r}, window {prompt['max_prompt_len']} tokens, vocabulary "
            f"{prompt['vocab']} ({prompt['tokenizer']}); examples that lost history items to the window: "
            f"{prompt['truncated_examples']}" + (f"; CF from {prompt['cf']}" if "cf" in prompt else ""))
  print("| model | valid AUC | valid UAUC | test AUC | test UAUC | UAUC users (valid/test) | steps | best step "
        "| train s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, r in rows:
    v, t = r["valid"], r["test"]
    print(f"| {name} | {v['auc']:.4f} | {v['uauc']:.4f} | {t['auc']:.4f} | {t['uauc']:.4f} | "
          f"{v['uauc_users']}/{t['uauc_users']} | {r['steps']} | {r['best_step']} | {r['train_seconds']:.0f} |")


if __name__ == "__main__":
  main()
