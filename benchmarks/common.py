"""Shared by the benchmark scripts: train `<model>:ml100k` presets (stages first), re-evaluate the best checkpoint
under another candidate protocol, print tables (each with its protocol)."""

from __future__ import annotations

import copy
import dataclasses
import shutil

import numpy as np

import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.data import load_dataset

# genrec.data.preprocess: per-user sequences are sorted by timestamp with a stable sort, so the held-out valid and
# test items among events at the same timestamp are the ones listed last in the .inter file.
TIME_TIES = "same-timestamp events in .inter file order"
METRICS = ("recall@10", "ndcg@10", "mrr@10", "recall@5", "ndcg@5")


def train(cfg, folder, data):
  """(trainer, results) of one fresh run of `cfg` in `folder`."""
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  shutil.rmtree(folder, ignore_errors=True)
  trainer = pipeline.trainer(cfg, folder, data=data, resume=False)
  return trainer, trainer.run()


def evaluate_best(trainer, candidates: str) -> dict:
  """{"valid", "test"} metrics of the trainer's best checkpoint (its last state without one) under
  eval.candidates=candidates; the trainer itself is left as it was."""
  params, other = trainer.best_state()
  task = copy.copy(trainer.task)
  task.cfg = dataclasses.replace(task.cfg, eval=dataclasses.replace(task.cfg.eval, candidates=candidates))
  evaluate = task.evaluator(trainer.placed)
  return {split: evaluate(params, other, split)[0] for split in ("valid", "test")}


def train_presets(models, overrides, workdir, preset="ml100k", per_model=None, also_all=False):
  """[(name, results)] for each model's preset, all on the same data and with the same --set overrides
  (plus `per_model[name]` overrides). also_all: results["all"] holds the best checkpoint's {"valid", "test"}
  under eval.candidates=all (the run's own protocol stays in results["valid"], results["test"])."""
  rows, data = [], None
  for name in models:
    sets = list(overrides) + list((per_model or {}).get(name, []))
    cfg = config_lib.override(genrec.configs.get(f"{name}:{preset}"), sets)
    data = data if data is not None else load_dataset(cfg.data)
    trainer, results = train(cfg, f"{workdir}/{name}", data)
    if also_all:
      results["all"] = evaluate_best(trainer, "all")
    rows.append((name, results))
    metric = cfg.trainer.best_metric
    print(f"{name}: test {metric}={results['test'][metric]:.4f} in {results['train_seconds']:.0f} s", flush=True)
  return rows, data


def protocol_line(data, protocol: dict, candidates: str | None = None) -> str:
  return (
    f"{data.name}: {data.num_users} users, {data.num_items} items; split={protocol['split']}, "
    f"candidates={candidates or protocol['candidates']}, score ties={protocol['ties'].split(' ')[0]}, "
    f"{TIME_TIES}"
  )


def print_table(rows, data, overrides) -> None:
  """One row per model under the runs' own protocol, then (for rows that have it) the same under candidates=all."""
  protocol = rows[0][1]["protocol"]
  tables = [(None, lambda r: (r["test"], r["valid"]))]
  if all("all" in r for _, r in rows) and protocol["candidates"] != "all":
    tables.append(("all", lambda r: (r["all"]["test"], r["all"]["valid"])))
  for candidates, pick in tables:
    print(f"\n{protocol_line(data, protocol, candidates)}; overrides: {overrides or 'none'}")
    print(
      "| model | Recall@10 (=HR@10) | NDCG@10 | MRR@10 | Recall@5 | NDCG@5 | valid NDCG@10 | steps | best step "
      "| train (s) | s/step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
      t, v = pick(r)
      print(
        f"| {name} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} | {t['recall@5']:.4f} | "
        f"{t['ndcg@5']:.4f} | {v['ndcg@10']:.4f} | {r['steps']} | {r['best_step']} | {r['train_seconds']:.0f} | "
        f"{r['train_seconds'] / max(r['steps'], 1):.3f} |"
      )


def mean_sd(values, digits: int = 4) -> str:
  """'mean ± sample sd' (just the value for one)."""
  v = np.asarray(values, np.float64)
  return f"{v.mean():.{digits}f}" if len(v) < 2 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
