"""`genrec export-embeddings RUN`: a run's item embeddings for people and other tools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrec.data import load_dataset
from genrec.families.content.contrastive import ItemContrastiveTask
from genrec.files import atomic_write
from genrec.models import protocols
from genrec.train.restore import restore


def export_embeddings(workdir: str | Path, out: str | Path | None = None, *, progress: bool = True) -> Path:
  """Writes a run's item embeddings, float32 [N+1, D] with row i = item id i (row 0 padding, zeros), as .npy
  (read back with allow_pickle=False) and a JSON sidecar beside it (run, model, items, dim, raw item ids).

  Item encoders (task "item_contrastive", e.g. mmenc) are re-encoded from the checkpoint: frozen tower features
  per item, fused in jitted batches split over the mesh, with a progress bar. CF models export the table
  their `item_embeddings()` returns (protocols.CFExporter, e.g. MF)."""
  workdir = Path(workdir)
  out = Path(out) if out else workdir / "item_embeddings.npy"
  if out.suffix != ".npy":
    raise ValueError(f"--out must end in .npy, got {out}")
  run = restore(workdir)
  cfg = run.config
  data = load_dataset(cfg.data)
  if cfg.model.task == ItemContrastiveTask.name:
    task = ItemContrastiveTask(cfg, data)
    table = task.encode_items(run.placed, run.placed.params, run.placed.other, progress=progress)
  elif protocols.provides(run.model, protocols.CFExporter):
    table = np.asarray(run.model.item_embeddings(), np.float32)
  else:
    raise ValueError(
      f"{workdir} is a {cfg.model_name} run: it has no item embeddings to export (train an item "
      "encoder such as mmenc, or a model with item_embeddings())"
    )
  if table.ndim != 2 or len(table) != data.num_items + 1:
    raise ValueError(
      f"{cfg.model_name} gave item embeddings of shape {table.shape}; {data.name} has "
      f"{data.num_items} items, so expected [{data.num_items + 1}, D] (row 0 padding)"
    )
  meta = {
    "run": str(workdir),
    "model": cfg.model_name,
    "preset": cfg.preset,
    "step": run.step,
    "items": int(len(table) - 1),
    "dim": int(table.shape[1]),
    "rows": "row i = item id i; row 0 = padding",
    "dataset": data.name,
    "item_ids": data.item_raw[1:],
  }
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic_write(out, lambda f: np.save(f, np.ascontiguousarray(table, np.float32), allow_pickle=False))
  atomic_write(out.with_suffix(".json"), json.dumps(meta, indent=2))
  return out
