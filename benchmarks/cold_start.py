"""Cold start on MovieLens-100k: Recall/NDCG@10 on test cases whose target item was held out of training
(`data.cold_items`) and on the others, for an ID-only model, the content retriever and TIGER on text-only vs
multimodal semantic IDs.

    python benchmarks/cold_start.py [--cold 0.1] [--steps sasrec=250 contentrec=250 mmenc=300 tiger=200]
                                    [--skip ROW ...] [--mmenc-set model.id_dropout=0.5]

Rows (every run on the same cold split, data.seed=0):
  sasrec              item ids only: a held-out item's embedding never trains
  contentrec text     UniSRec-style retriever over MiniLM item texts (text:minilm)
  contentrec mm       the same over mmenc's fused text + genre (+ ID) vectors
  tiger text          TIGER on rqkmeans:ml100k semantic IDs of MiniLM item texts
  tiger mm            TIGER on rqkmeans:ml100k semantic IDs of mmenc's fused vectors
  tiger ..., no new-item rule   the same TIGER checkpoint, held-out items ranked by their full code tuple
                                (model.new_item_fraction=0) instead of their prefix (TIGER's cold-start rule)
mmenc:ml100k is trained here on the cold split (its ID modality is absent for held-out items) and read as
run:DIR. The presets' step counts are cut to fit a 2-core CPU in ~15 minutes (see --steps), one validation
at the end; TIGER uses the rqkmeans tokenizer (no gradient steps) instead of the preset's rqvae.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.data import load_dataset

STEPS = {"sasrec": 250, "contentrec": 250, "mmenc": 300, "tiger": 200}


def train(spec, sets, folder, data=None):
  cfg = config_lib.override(genrec.configs.get(spec), sets)
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  shutil.rmtree(folder, ignore_errors=True)
  start = time.time()
  results = pipeline.trainer(cfg, folder, data=data, resume=False).run()
  return results, time.time() - start


def without_new_item_rule(folder):
  """Test results of a finished TIGER run with new items ranked by their full code tuple like any item."""
  from genrec.api import evaluate_run
  from genrec.models.tiger import Tiger

  run = genrec.load(folder)
  slots, Tiger.new_item_slots = Tiger.new_item_slots, lambda self, k: 0
  try:
    return evaluate_run(run, write=False)
  finally:
    Tiger.new_item_slots = slots


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--cold", type=float, default=0.1)
  ap.add_argument("--steps", nargs="*", default=[], metavar="MODEL=N")
  ap.add_argument("--workdir", default="runs/bench-cold-start")
  ap.add_argument("--skip", nargs="*", default=[], help="row names to leave out, e.g. 'contentrec mm'")
  ap.add_argument("--mmenc-set", nargs="*", default=[], help="overrides of the mmenc run, e.g. model.id_dropout=0.5")
  args = ap.parse_args()
  steps = {**STEPS, **{k: int(v) for k, v in (s.split("=") for s in args.steps)}}
  common = [f"data.cold_items={args.cold}"]
  per_step = lambda m: [
    f"trainer.steps={steps[m]}",
    f"trainer.eval_every={steps[m]}",  # noqa: E731
    f"trainer.checkpoint_every={steps[m]}",
    "trainer.warmup_steps=50",
  ]
  mm_dir = f"{args.workdir}/mmenc"
  tiger = ["model.tokenizer=rqkmeans:ml100k"]
  rows = [
    ("sasrec", "ids", "sasrec:ml100k", []),
    ("contentrec text", "text:minilm", "contentrec:ml100k", ["data.item_embeddings=text:minilm"]),
    ("contentrec mm", "run:mmenc", "contentrec:ml100k", [f"data.item_embeddings=run:{mm_dir}"]),
    ("tiger text", "text:minilm", "tiger:ml100k", tiger + ["data.item_embeddings=text:minilm"]),
    ("tiger mm", "run:mmenc", "tiger:ml100k", tiger + [f"data.item_embeddings=run:{mm_dir}"]),
  ]
  rows = [r for r in rows if r[0] not in args.skip]
  total = time.time()
  if any("mm" in r[0] for r in rows):
    results, seconds = train("mmenc:ml100k", common + per_step("mmenc") + args.mmenc_set, mm_dir)
    print(f"mmenc (cold split): valid recall@10={results['valid']['recall@10']:.4f} in {seconds:.0f} s", flush=True)
  table = []
  for name, content, spec, sets in rows:
    model = spec.split(":")[0]
    folder = f"{args.workdir}/{name.replace(' ', '-')}"
    results, seconds = train(spec, common + per_step(model) + sets, folder)
    g = results["groups"]["test"]["cold_start"]["groups"]
    table.append((name, content, results, g, seconds, steps[model]))
    print(
      f"{name}: cold recall@10={g.get('cold', {}).get('recall@10', float('nan')):.4f} "
      f"warm recall@10={g['warm']['recall@10']:.4f} in {seconds:.0f} s",
      flush=True,
    )
    if model == "tiger":  # the same checkpoint without TIGER's new-item rule (model.new_item_fraction=0)
      r0 = without_new_item_rule(folder)
      table.append(
        (f"{name}, no new-item rule", content, r0, r0["groups"]["test"]["cold_start"]["groups"], 0, steps[model])
      )
  data = load_dataset(config_lib.override(genrec.configs.get("sasrec:ml100k"), common).data)
  proto = table[0][2]["protocol"]["cold_start"]
  print(
    f"\n{data.name}: {data.num_users} users, {data.num_items} items, {proto['cold_items']} held out "
    f"(data.cold_items={args.cold}, seed 0; {proto['interactions_removed']} training interactions removed); "
    f"leave-one-out, all_minus_seen, test split"
  )
  print(
    "| model | content | cold cases | cold Recall@10 | cold NDCG@10 | warm Recall@10 | warm NDCG@10 | "
    "all Recall@10 | all NDCG@10 | steps | wall (s) |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for name, content, r, g, seconds, n in table:
    cold, warm = g.get("cold", {"users": 0}), g["warm"]
    cell = lambda d, k: f"{d[k]:.4f}" if k in d else "-"  # noqa: E731
    print(
      f"| {name} | {content} | {cold['users']} | {cell(cold, 'recall@10')} | {cell(cold, 'ndcg@10')} | "
      f"{cell(warm, 'recall@10')} | {cell(warm, 'ndcg@10')} | {r['test']['recall@10']:.4f} | "
      f"{r['test']['ndcg@10']:.4f} | {n} | {seconds:.0f} |"
    )
  print(f"\ntotal {time.time() - total:.0f} s")


if __name__ == "__main__":
  main()
