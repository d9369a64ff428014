"""The LLM-CF family on MovieLens-100k under CoLLM's protocol, as one table: MF alone, TALLRec (text-only
prompts + LoRA), CoLLM-MF (the same prompts with user/item placeholders carrying MF's embeddings) and LLaRA
(title + hybrid MF token per item, text-to-hybrid curriculum), all on the tiny RANDOM LLM — an LLM that knows
nothing, so any gain over TALLRec comes from the CF tokens.

Every rating is an example, label = rating > 3, global time split 80/10/10; AUC and UAUC on valid and test.
LLaRA also reports HitRatio@1 of the target among itself + 19 unseen items (first 200 positives of a split).
CoLLM and LLaRA read the embeddings of the MF row's own run (`model.cf_run=WORKDIR/mf`) when MF is in the table.
`--llara-set` overrides LLaRA alone (its curriculum is a model key the others lack).

    python benchmarks/collm_ml100k.py [--models mf tallrec collm llara] [--set trainer.steps=1000 ...]
        [--llara-set trainer.steps=200 model.curriculum_steps=100] [--workdir runs/bench-collm]
"""

from __future__ import annotations

import argparse

from common import train_presets

MODELS = ("mf", "tallrec", "collm", "llara")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", nargs="*", default=list(MODELS))
  ap.add_argument("--set", nargs="*", default=[])
  ap.add_argument("--llara-set", nargs="*", default=[])
  ap.add_argument("--workdir", default="runs/bench-collm-ml100k")
  args = ap.parse_args()
  cf = [f"model.cf_run={args.workdir}/mf"] if "mf" in args.models else []
  per_model = {"collm": cf, "llara": cf + args.llara_set}
  models = sorted(args.models, key=lambda m: m != "mf")  # MF first: CoLLM reads its run
  rows, _ = train_presets(models, args.set, args.workdir, per_model=per_model)
  p = rows[0][1]["protocol"]
  print(
    f"\n{p['dataset']}: {p['users']} users, {p['items']} items; split={p['split']}; label={p['label']}; "
    f"examples {p['examples']}; overrides: {args.set or 'none'}"
  )
  for name, r in rows:
    prompt = r["protocol"].get("prompt")
    if prompt:
      print(
        f"{name}: prompt {prompt['text']!r}, window {prompt['max_prompt_len']} tokens, vocabulary "
        f"{prompt['vocab']} ({prompt['tokenizer']}); examples that lost history items to the window: "
        f"{prompt['truncated_examples']}" + (f"; CF from {prompt['cf']}" if "cf" in prompt else "")
      )
    ranking = r["protocol"].get("ranking")
    if ranking:
      print(
        f"{name}: HR@1 over {r['protocol']['candidates']} — {ranking['candidates']}; {ranking['examples']}; "
        f"ties {ranking['ties']}"
      )
  print(
    "| model | valid AUC | valid UAUC | test AUC | test UAUC | UAUC users (valid/test) | valid HR@1 | test HR@1 "
    "| ranked (valid/test) | steps | best step | train s |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for name, r in rows:
    v, t = r["valid"], r["test"]
    hr = f"{v['hr@1']:.4f} | {t['hr@1']:.4f} | {v['ranked']}/{t['ranked']}" if "hr@1" in t else "- | - | -"
    print(
      f"| {name} | {v['auc']:.4f} | {v['uauc']:.4f} | {t['auc']:.4f} | {t['uauc']:.4f} | "
      f"{v['uauc_users']}/{t['uauc_users']} | {hr} | {r['steps']} | {r['best_step']} | "
      f"{r['train_seconds']:.0f} |"
    )


if __name__ == "__main__":
  main()
