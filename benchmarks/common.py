"""Shared by the benchmark scripts: train `<model>:ml100k` presets (stages first), print one table."""

from __future__ import annotations

import dataclasses
import shutil

import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.data import load_dataset


def train_presets(models, overrides, workdir, preset="ml100k", per_model=None):
  """[(name, results)] for each model's preset, all on the same data and with the same --set overrides
  (plus `per_model[name]` overrides)."""
  rows, data = [], None
  for name in models:
    sets = list(overrides) + list((per_model or {}).get(name, []))
    cfg = config_lib.override(genrec.configs.get(f"{name}:{preset}"), sets)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
    data = data if data is not None else load_dataset(cfg.data)
    folder = f"{workdir}/{name}"
    shutil.rmtree(folder, ignore_errors=True)
    results = pipeline.trainer(cfg, folder, data=data, resume=False).run()
    rows.append((name, results))
    metric = cfg.trainer.best_metric
    print(f"{name}: test {metric}={results['test'][metric]:.4f} in {results['train_seconds']:.0f} s", flush=True)
  return rows, data


def print_table(rows, data, overrides) -> None:
  protocol = rows[0][1]["protocol"]
  print(
    f"\n{data.name}: {data.num_users} users, {data.num_items} items; split={protocol['split']}, "
    f"candidates={protocol['candidates']}; overrides: {overrides or 'none'}"
  )
  print(
    "| model | Recall@10 (=HR@10) | NDCG@10 | MRR@10 | Recall@5 | NDCG@5 | valid NDCG@10 | steps | best step "
    "| train (s) | s/step |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for name, r in rows:
    t, v = r["test"], r["valid"]
    print(
      f"| {name} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} | {t['recall@5']:.4f} | "
      f"{t['ndcg@5']:.4f} | {v['ndcg@10']:.4f} | {r['steps']} | {r['best_step']} | {r['train_seconds']:.0f} | "
      f"{r['train_seconds'] / max(r['steps'], 1):.3f} |"
    )
