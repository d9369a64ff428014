"""Exports of a run's artifacts for people and other tools."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from genrec.files import atomic_write
from genrec.train import stages


def semantic_id_table(workdir: str | Path) -> tuple[np.ndarray, dict]:
  """The item -> code table of a tokenizer run, or the one a generative retriever was trained on."""
  workdir = Path(workdir)
  if (workdir / "artifacts" / f"{stages.SEMANTIC_IDS}.json").exists():
    return stages.read_semantic_ids(workdir)
  import genrec

  run = genrec.load(workdir, added_items=False)     # the table it was trained on (added items: RUN/added_items)
  codes = getattr(run.model, "item_codes", None)
  if codes is None:
    raise ValueError(f"{workdir} is a {run.config.model_name} run: it has no semantic IDs (train a tokenizer "
                     "such as rqvae or rqkmeans, or a generative retriever such as tiger)")
  from genrec.models.semantic_ids import code_stats

  table = np.asarray(codes[...])
  stats = code_stats(table[1:, :-1], int(table[1:, :-1].max()) + 1)
  return table, {"version": getattr(run.config.model, "semantic_ids_version", ""), "stats": stats,
                 "items": int(table.shape[0] - 1), "digits": int(table.shape[1])}


def export_semantic_ids(workdir: str | Path, out: str | Path | None = None) -> Path:
  """Writes CSV (item, title, c0..cL) or JSON ({"version", "stats", "items": {raw id: [codes]}}), atomically."""
  import genrec

  workdir = Path(workdir)
  table, meta = semantic_id_table(workdir)
  cfg = genrec.load(workdir, added_items=False).config
  from genrec.data import load_dataset

  data = load_dataset(cfg.data)
  if len(table) != data.num_items + 1:
    raise ValueError(f"the semantic-ID table has {len(table) - 1} items but {data.name} has {data.num_items}")
  out = Path(out) if out else workdir / f"{stages.SEMANTIC_IDS}.csv"
  if out.suffix == ".json":
    body = json.dumps({**meta, "items": {data.item_raw[i]: table[i].tolist() for i in range(1, len(table))}})
  elif out.suffix == ".csv":
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item", "title", *[f"c{j}" for j in range(table.shape[1])]])
    for i in range(1, len(table)):
      w.writerow([data.item_raw[i], data.item_titles[i], *table[i].tolist()])
    body = buf.getvalue()
  else:
    raise ValueError(f"--out must end in .csv or .json, got {out}")
  atomic_write(out, body)
  atomic_write(out.with_name(out.stem + ".stats.json"), json.dumps(meta, indent=2))
  return out


def export_embeddings(workdir: str | Path, out: str | Path | None = None, *, progress: bool = True) -> Path:
  """Writes a run's item embeddings, float32 [N+1, D] with row i = item id i (row 0 padding, zeros), as .npy
  (read back with allow_pickle=False) and a JSON sidecar beside it (run, model, items, dim, raw item ids).

  Item encoders (task "item_contrastive", e.g. mmenc) are re-encoded from the checkpoint: frozen tower features
  per item, fused in jitted batches split over the mesh, with a progress bar. Other models export the table
  their `item_embeddings()` returns (e.g. MF)."""
  import genrec

  workdir = Path(workdir)
  out = Path(out) if out else workdir / "item_embeddings.npy"
  if out.suffix != ".npy":
    raise ValueError(f"--out must end in .npy, got {out}")
  run = genrec.load(workdir)
  cfg, data = run.config, run.dataset()
  if getattr(cfg.model, "task", "") == "item_contrastive":
    from genrec.train.contrastive import ItemContrastiveTask

    task = ItemContrastiveTask(cfg, data)
    table = task.encode_items(run.placed, run.placed.params, run.placed.other, progress=progress)
  elif hasattr(run.model, "item_embeddings"):
    table = np.asarray(run.model.item_embeddings(), np.float32)
  else:
    raise ValueError(f"{workdir} is a {cfg.model_name} run: it has no item embeddings to export (train an item "
                     "encoder such as mmenc, or a model with item_embeddings())")
  if table.ndim != 2 or len(table) != data.num_items + 1:
    raise ValueError(f"{cfg.model_name} gave item embeddings of shape {table.shape}; {data.name} has "
                     f"{data.num_items} items, so expected [{data.num_items + 1}, D] (row 0 padding)")
  meta = {"run": str(workdir), "model": cfg.model_name, "preset": cfg.preset, "step": run.step,
          "items": int(len(table) - 1), "dim": int(table.shape[1]), "rows": "row i = item id i; row 0 = padding",
          "dataset": data.name, "item_ids": data.item_raw[1:]}
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic_write(out, lambda f: np.save(f, np.ascontiguousarray(table, np.float32), allow_pickle=False))
  sidecar = out.with_suffix(".json")
  atomic_write(sidecar, json.dumps(meta, indent=2))
  return out
