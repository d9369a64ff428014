"""Exports of a run's artifacts for people and other tools."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from genrec.train import stages


def semantic_id_table(workdir: str | Path) -> tuple[np.ndarray, dict]:
  """The item -> code table of a tokenizer run, or the one a generative retriever was trained on."""
  workdir = Path(workdir)
  if (workdir / "artifacts" / f"{stages.SEMANTIC_IDS}.json").exists():
    return stages.read_semantic_ids(workdir)
  import genrec

  run = genrec.load(workdir)
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
  cfg = genrec.load(workdir).config
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
  tmp = out.with_name(out.name + ".tmp")
  tmp.write_text(body)
  tmp.replace(out)
  (out.with_name(out.stem + ".stats.json")).write_text(json.dumps(meta, indent=2))
  return out
