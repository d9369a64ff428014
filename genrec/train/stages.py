"""Multi-stage models: item content embeddings and the runs a model depends on (e.g. TIGER on a tokenizer).

A dependency stage is an ordinary run of the shared trainer, kept under `$GENREC_CACHE/stages/` (default
~/.cache/genrec) in a folder named by a hash of its full config: a second `genrec train tiger:ml100k` reuses
the tokenizer the first one trained, and a changed tokenizer config trains a new one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np

from genrec import artifacts
from genrec import config as config_lib
from genrec.config import ConfigError, DataConfig, ExperimentConfig
from genrec.data.errors import DataError
from genrec.data.types import SeqData
from genrec.files import atomic_write, cache_root

SEMANTIC_IDS = "semantic_ids"


def item_texts(data: SeqData, policy: str) -> list[str]:
  """Texts of items 1..N; empty ones are an error unless policy == "placeholder"."""
  if policy not in ("error", "placeholder"):
    raise ConfigError(f"data.empty_item_text must be 'error' or 'placeholder', got {policy!r}")
  texts = list(data.item_text[1:])
  empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
  if empty and policy == "error":
    shown = ", ".join(f"{data.item_raw[i]!r}" for i in empty[:5])
    raise DataError(f"{len(empty)} item(s) of {data.name} have no text to embed (item ids {shown}"
                    f"{', ...' if len(empty) > 5 else ''}); give them text, or set "
                    "data.empty_item_text=placeholder to embed 'item <id>' for them")
  for i in empty:
    texts[i - 1] = f"item {data.item_raw[i]}"
  return texts


def item_embeddings(data: SeqData, data_cfg: DataConfig, *, progress: bool = True) -> np.ndarray:
  """float32 [num_items + 1, D], row 0 (padding) zeros. Text embeddings are cached on disk per (encoder,
  texts) and per process. `run:MODEL:PRESET` runs (or reuses) that encoder stage on its own preset's data and
  reads its fused embeddings, checked against this catalogue; `run:DIR` reads a finished run folder's."""
  memo = getattr(data, "_item_embeddings", {})
  key = (data_cfg.item_embeddings, data_cfg.empty_item_text)
  if key in memo:
    return memo[key]
  source = data_cfg.item_embeddings
  kind, _, arg = source.partition(":")
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
      raise DataError(f"item embeddings {path} have shape {table.shape}; the catalogue of {data.name} has "
                      f"{data.num_items} items, so expected [{data.num_items}, D] (one row per item id 1..N)")
  elif kind == "run":
    from genrec.train.contrastive import embeddings_from_run

    table = embeddings_from_run(arg, data, data_cfg, progress=progress)
  else:
    raise ConfigError("data.item_embeddings must be 'text:minilm', 'text:HF_DIR', 'npy:FILE', 'random:D' or "
                      f"'run:MODEL:PRESET' / 'run:DIR' (fused item embeddings of an encoder run), got {source!r}")
  table = np.concatenate([np.zeros((1, table.shape[1]), np.float32), np.asarray(table, np.float32)])
  memo[key] = table
  object.__setattr__(data, "_item_embeddings", memo)
  return table


SEQUENCE_FIELDS = ("max_len", "train_window")     # how a run cuts sequences into rows: each stage's own


def stage_config(spec: str, overrides, data_cfg: DataConfig) -> ExperimentConfig:
  """The dependency's config: its preset with overrides, on the dependent run's data (same catalogue: dataset,
  filters, item embeddings, cold items, seed), but with its own SEQUENCE_FIELDS. A tokenizer or CF stage does
  not read the dependent's history windows, so a TIGER run with another `data.max_len` reuses its tokenizer
  (these fields were part of the key before: changing them retrained the stage)."""
  import genrec.configs

  cfg = config_lib.override(genrec.configs.get(spec), list(overrides))
  own = {name: getattr(cfg.data, name) for name in SEQUENCE_FIELDS}
  return dataclasses.replace(cfg, data=dataclasses.replace(data_cfg, **own))


def stage_dir(cfg: ExperimentConfig) -> Path:
  """The cache folder of a stage config. When its item embeddings come from an encoder stage
  (`data.item_embeddings=run:MODEL:PRESET`), that stage's own folder name is part of the key: a changed encoder
  preset gives new embeddings, so the tokenizer over them is a new stage too, not a reuse of the old one."""
  text = config_lib.to_json(cfg)
  source = cfg.data.item_embeddings
  if source.startswith("run:") and not Path(source[4:]).expanduser().is_dir():
    from genrec.train.contrastive import encoder_run

    text += "\n" + encoder_run(source[4:], cfg.data, train=False).name
  digest = hashlib.sha256(text.encode()).hexdigest()[:12]
  return cache_root() / "stages" / f"{cfg.model_name}-{digest}"


def run_stage(cfg: ExperimentConfig, *, data=None, progress: bool = True) -> Path:
  """Trains the stage unless a finished run of exactly this config exists; returns its folder. progress=False
  (the dependent run's trainer.progress) silences the stage's progress bars; it is not part of the cache key."""
  from genrec.train.trainer import Trainer

  workdir = stage_dir(cfg)
  if not (workdir / "results.json").exists():
    print(f"stage {cfg.model_name}:{cfg.preset} -> {workdir}", file=sys.stderr)
    quiet = dataclasses.replace(cfg.trainer, progress=cfg.trainer.progress and progress)
    Trainer(dataclasses.replace(cfg, trainer=quiet), workdir, data=data).run()
  return workdir


def write_semantic_ids(workdir: Path, table: np.ndarray, stats: dict, cfg: ExperimentConfig) -> dict:
  """Saves the item -> semantic ID table [N+1, C] (row 0 padding) with its version and statistics."""
  meta = {"items": int(table.shape[0] - 1), "digits": int(table.shape[1]), "tokenizer": cfg.model_name,
          "preset": cfg.preset, "stats": stats}
  return artifacts.write(workdir, SEMANTIC_IDS, {"codes": np.asarray(table, np.int32)}, meta)


def read_semantic_ids(workdir: str | Path) -> tuple[np.ndarray, dict]:
  """(table [N+1, C] int32, {"version", "items", "digits", "tokenizer", "preset", "stats"})."""
  found = artifacts.read(workdir, SEMANTIC_IDS, what="semantic-ID table", hint="is it a tokenizer run?")
  return found["codes"], {"version": found.version, **found.meta}
