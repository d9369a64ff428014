"""Item content vectors, `data.item_embeddings`: what tokenizers quantise, content retrievers score and the
multimodal encoder's text modality reads.

  text:minilm | text:HF_DIR   a frozen BERT-family tower over each item's text (cached on disk per texts)
  npy:FILE                    a fixed table [num_items, D], one row per item id 1..N
  random:D                    seeded Gaussian vectors (tests)
  run:MODEL:PRESET | run:DIR  the fused item embeddings an item-encoder run left (its artifact "item_embeddings"),
                              read from the folder genrec.pipeline resolved for the role "item_embeddings"

An item-encoder run writes its table with `write_item_embeddings` and the catalogue and cold-start split it was
trained on; a reader refuses a table of another catalogue or split.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from genrec import artifacts
from genrec.config import ConfigError, DataConfig, ExperimentConfig
from genrec.data.errors import DataError
from genrec.data.types import SeqData
from genrec.files import cache_root
from genrec.train.tasks import Stages, item_embeddings_stage

ITEM_EMBEDDINGS = "item_embeddings"


def item_texts(data: SeqData, policy: str) -> list[str]:
  """Texts of items 1..N; empty ones are an error unless policy == "placeholder"."""
  if policy not in ("error", "placeholder"):
    raise ConfigError(f"data.empty_item_text must be 'error' or 'placeholder', got {policy!r}")
  texts = list(data.item_text[1:])
  empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
  if empty and policy == "error":
    shown = ", ".join(f"{data.item_raw[i]!r}" for i in empty[:5])
    raise DataError(
      f"{len(empty)} item(s) of {data.name} have no text to embed (item ids {shown}"
      f"{', ...' if len(empty) > 5 else ''}); give them text, or set "
      "data.empty_item_text=placeholder to embed 'item <id>' for them"
    )
  for i in empty:
    texts[i - 1] = f"item {data.item_raw[i]}"
  return texts


def item_embeddings(data: SeqData, data_cfg: DataConfig, stages=None, *, progress: bool = True) -> np.ndarray:
  """float32 [num_items + 1, D], row 0 (padding) zeros; computed once per (source, data) in a process. `stages`
  (genrec.train.tasks.Stages) gives the encoder run of `run:` sources."""
  source = data_cfg.item_embeddings
  kind, _, arg = source.partition(":")
  folder = encoder_folder(data_cfg, stages) if kind == "run" else None
  memo = getattr(data, "_item_embeddings", {})
  key = (source, data_cfg.empty_item_text, str(folder))
  if key in memo:
    return memo[key]
  if kind == "text":
    from genrec.models.text import TextEncoder

    texts = item_texts(data, data_cfg.empty_item_text)
    encoder = TextEncoder.minilm() if arg in ("", "minilm") else TextEncoder.from_pretrained(arg)
    if progress:
      print(f"embedding {len(texts)} item texts of {data.name} with {arg or 'minilm'}", file=sys.stderr)
    table = encoder.encode(texts, progress=progress, cache=cache_root() / "embeddings")
  elif kind == "random":
    try:
      dim = int(arg)
    except ValueError:
      dim = 0
    if dim < 1:
      raise ConfigError(f"data.item_embeddings={source!r}: 'random:D' needs a width D >= 1")
    table = np.random.default_rng(data_cfg.seed).normal(size=(data.num_items, dim)).astype(np.float32)
  elif kind == "npy":
    path = Path(arg).expanduser()
    if not path.is_file():
      raise DataError(f"data.item_embeddings={source!r}: no such file")
    table = np.load(path, allow_pickle=False)
    if table.ndim != 2 or table.shape[0] != data.num_items:
      raise DataError(
        f"item embeddings {path} have shape {table.shape}; the catalogue of {data.name} has "
        f"{data.num_items} items, so expected [{data.num_items}, D] (one row per item id 1..N)"
      )
  elif kind == "run":
    table = embeddings_of_run(folder, data, f"data.item_embeddings={source}")
  else:
    raise ConfigError(
      "data.item_embeddings must be 'text:minilm', 'text:HF_DIR', 'npy:FILE', 'random:D' or "
      f"'run:MODEL:PRESET' / 'run:DIR' (fused item embeddings of an encoder run), got {source!r}"
    )
  table = np.concatenate([np.zeros((1, table.shape[1]), np.float32), np.asarray(table, np.float32)])
  memo[key] = table
  object.__setattr__(data, "_item_embeddings", memo)
  return table


def encoder_folder(data_cfg: DataConfig, stages=None, *, advice: str = "") -> Path:
  """The run folder of `data.item_embeddings=run:...`: the folder itself for run:DIR, else the encoder stage's
  from `stages` (a MissingStageError, with `advice`, when it was not found)."""
  ref = item_embeddings_stage(data_cfg)[ITEM_EMBEDDINGS]
  if ref.folder:
    return Path(ref.folder)
  return (stages if stages is not None else Stages()).folder(ITEM_EMBEDDINGS, advice=advice)


def catalogue_fingerprint(data) -> str:
  return hashlib.sha256("\n".join(data.item_raw).encode()).hexdigest()[:16]


def cold_fingerprint(data) -> str:
  """Which items the data holds out of training (the cold-start protocol); "" when none."""
  if getattr(data, "cold_items", None) is None:
    return ""
  return hashlib.sha256(np.asarray(data.cold_items, np.int32).tobytes()).hexdigest()[:16]


def write_item_embeddings(workdir: Path, emb_NxD: np.ndarray, cfg: ExperimentConfig, data) -> dict:
  """The run artifact "item_embeddings" ([N+1, D] float32, row 0 padding) with the catalogue it covers."""
  emb_NxD = np.asarray(emb_NxD, np.float32)
  meta = {
    "items": int(len(emb_NxD) - 1),
    "dim": int(emb_NxD.shape[1]),
    "dataset": data.name,
    "catalogue": catalogue_fingerprint(data),
    "model": cfg.model_name,
    "preset": cfg.preset,
    "modalities": list(cfg.model.modalities),
    "fusion": cfg.model.fusion,
    "cold": cold_fingerprint(data),
  }
  return artifacts.write(workdir, ITEM_EMBEDDINGS, {"embeddings": emb_NxD}, meta)


def read_item_embeddings(workdir: str | Path) -> tuple[np.ndarray, dict]:
  found = artifacts.read(workdir, ITEM_EMBEDDINGS, what="item embeddings", hint="is it a finished mmenc run?")
  table, meta = found["embeddings"], {"version": found.version, **found.meta}
  if table.ndim != 2 or table.shape != (meta.get("items", -2) + 1, meta.get("dim")):
    raise DataError(
      f"item embeddings in {workdir} have shape {table.shape}; their meta says "
      f"[{meta.get('items')} + 1, {meta.get('dim')}]"
    )
  return table, meta


def embeddings_of_run(workdir: str | Path, data, setting: str) -> np.ndarray:
  """The fused embeddings [N, D] of items 1..N that the encoder run in `workdir` left, checked to cover this
  catalogue and cold-start split (`setting` names where the run was asked for, for the errors)."""
  table, meta = read_item_embeddings(workdir)
  if meta["items"] != data.num_items or meta["catalogue"] != catalogue_fingerprint(data):
    raise DataError(
      f"{setting}: its embeddings cover the {meta['items']} items of "
      f"{meta['dataset']}, which is not this run's catalogue ({data.num_items} items of {data.name}"
      f"{', other item ids' if meta['items'] == data.num_items else ''})"
    )
  if meta.get("cold", "") != cold_fingerprint(data):
    raise DataError(
      f"{setting}: the encoder was trained on another cold-start split than "
      f"this run's (data.cold_items / data.seed differ), so it saw interactions this run holds out "
      "or the reverse; train the encoder with the same data.cold_items and data.seed"
    )
  return table[1:]
