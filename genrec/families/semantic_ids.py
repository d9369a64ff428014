"""The semantic-ID family: tokenizers turn item content vectors into short code tuples, retrievers generate the
next item's tuple (TIGER).

  item_embeddings        (task) a tokenizer (RQ-VAE, RQ-KMeans) over `data.item_embeddings`: batches of item
                         vectors; validation = its own loss metrics over every item plus code statistics; the
                         finished run leaves the artifact "semantic_ids": the deduplicated item -> code table
                         [N+1, C] (row 0 padding, the last digit TIGER's collision digit) and its statistics.
  semantic_id_retrieval  (task) next-item training and ranking as in the engine's next_item task; the tokenizer
                         stage `model.tokenizer` (role "tokenizer") gives the table, which sizes the model
                         (`with_semantic_ids`; its version is pinned in the config) and is loaded into it when
                         training starts (`set_item_codes`). The model checkpoints it, so evaluation and loading
                         never read the stage again.

A new retriever over semantic IDs is a model providing `protocols.SemanticIDRetriever` whose config provides
`protocols.SemanticIDConfig` and says `task = "semantic_id_retrieval"`: the stage, the table and the search tables
come with the task.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from genrec import artifacts
from genrec.config import ConfigError, ExperimentConfig
from genrec.data import load_dataset
from genrec.data.pipeline import item_batches
from genrec.families.content import sources
from genrec.files import atomic_write
from genrec.models import protocols
from genrec.models.semantic_ids.collisions import code_stats, dedup_codes
from genrec.train import sharding
from genrec.train.next_item import NextItemTask
from genrec.train.restore import restore
from genrec.train.tasks import StageRef, Task, item_embeddings_stage, register_task

SEMANTIC_IDS = "semantic_ids"


def write_semantic_ids(workdir: Path, table: np.ndarray, stats: dict, cfg: ExperimentConfig) -> dict:
  """Saves the item -> semantic ID table [N+1, C] (row 0 padding) with its version and statistics."""
  meta = {
    "items": int(table.shape[0] - 1),
    "digits": int(table.shape[1]),
    "tokenizer": cfg.model_name,
    "preset": cfg.preset,
    "stats": stats,
  }
  return artifacts.write(workdir, SEMANTIC_IDS, {"codes": np.asarray(table, np.int32)}, meta)


def read_semantic_ids(workdir: str | Path) -> tuple[np.ndarray, dict]:
  """(table [N+1, C] int32, {"version", "items", "digits", "tokenizer", "preset", "stats"})."""
  found = artifacts.read(workdir, SEMANTIC_IDS, what="semantic-ID table", hint="is it a tokenizer run?")
  return found["codes"], {"version": found.version, **found.meta}


# ---- tokenizers -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ItemTable:
  """What a tokenizer config's `resolve()` sees."""

  name: str
  num_items: int
  item_embeddings: np.ndarray


@register_task("item_embeddings")
class TokenizerTask(Task):
  requires = (protocols.Trainable, protocols.ItemEncoder)
  exports = (SEMANTIC_IDS,)
  splits = None  # it fits item vectors; no user split is evaluated

  @classmethod
  def stage_refs(cls, cfg: ExperimentConfig):
    return item_embeddings_stage(cfg.data)

  @functools.cached_property
  def embeddings(self) -> np.ndarray:
    return sources.item_embeddings(self.data, self.cfg.data, self.stages, progress=self.cfg.trainer.progress)

  @property
  def view(self) -> ItemTable:
    return ItemTable(self.data.name, self.data.num_items, self.embeddings)

  def train_dataset(self, *, process_index: int, process_count: int):
    return item_batches(
      self.embeddings,
      global_batch=self.cfg.trainer.batch_size,
      seed=self.cfg.data.seed,
      process_index=process_index,
      process_count=process_count,
    )

  def prepare(self, placed, key) -> None:
    """k-means initialisation of the codebooks on the whole catalogue (protocols.CodebookInit), unless the
    config turns it off (`kmeans_init`)."""
    model = placed.model(train=True)
    if protocols.provides(model, protocols.CodebookInit) and getattr(self.cfg.model, "kmeans_init", True):
      model.init_codebooks(self.embeddings[1:], key)
      _, placed.params, _, placed.other = placed.split(model)

  def codes(self, placed, params, other) -> np.ndarray:
    """Codes [N, L] of items 1..N under `params`."""
    model = nnx.merge(placed.eval_graphdef, params, placed.rngs, other)
    encode = jax.jit(lambda m, x: m.encode({"embedding": x}))
    chunk = self.cfg.eval.batch_size
    x = self.embeddings[1:]
    return np.concatenate([np.asarray(encode(model, x[i : i + chunk])) for i in range(0, len(x), chunk)])

  def evaluator(self, placed):
    graphdef, cfg = placed.eval_graphdef, self.cfg
    rep = sharding.replicated(placed.mesh)
    loss = jax.jit(
      lambda params, other, rngs, batch: nnx.merge(graphdef, params, rngs, other).loss(batch)[1], out_shardings=rep
    )

    def evaluate(params, other, split):
      del split  # the catalogue is the same for valid and test
      n, chunk = self.data.num_items, cfg.eval.batch_size
      totals: dict[str, float] = {}
      for start in range(0, n, chunk):
        items = 1 + (np.arange(start, start + chunk) % n)  # the last chunk wraps around: fixed shapes
        weight = min(chunk, n - start) / n
        batch = {"embedding": self.embeddings[items], "item": items.astype(np.int32)}
        for k, v in jax.device_get(loss(params, other, placed.rngs, batch)).items():
          if np.ndim(v) == 0:
            totals[k] = totals.get(k, 0.0) + float(v) * weight
      stats = code_stats(self.codes(placed, params, other), cfg.model.codebook_size)
      totals["collision_rate"] = stats["collision_rate"]
      totals["distinct_tuples"] = stats["distinct_tuples"]
      for level, (u, p) in enumerate(zip(stats["usage"], stats["perplexity"])):
        totals[f"usage/l{level}"], totals[f"perplexity/l{level}"] = u, p
      return totals, {}

    return evaluate

  def finish(self, trainer, params, other) -> dict:
    """Writes the deduplicated item -> semantic ID table next to the checkpoints."""
    codes = self.codes(trainer.placed, params, other)
    stats = code_stats(codes, self.cfg.model.codebook_size)
    table = np.concatenate([np.zeros((1, codes.shape[1] + 1), np.int32), dedup_codes(codes)])
    stats["max_collision_digit"] = int(table[:, -1].max())
    if jax.process_index() == 0:
      return {SEMANTIC_IDS: write_semantic_ids(trainer.workdir, table, stats, self.cfg)}
    return {}

  def protocol(self) -> dict:
    return {
      "dataset": self.data.name,
      "items": self.data.num_items,
      "split": "catalogue",
      "embeddings": self.cfg.data.item_embeddings,
      "candidates": "-",
      "ks": [],
      "users": self.data.num_users,
      "ties": "-",
    }


# ---- retrievers -----------------------------------------------------------------------------------------------


@register_task("semantic_id_retrieval")
class SemanticIDRetrievalTask(NextItemTask):
  requires = (protocols.Trainable, protocols.SemanticIDRetriever)
  config_requires = (protocols.SemanticIDConfig,)

  @classmethod
  def stage_refs(cls, cfg: ExperimentConfig):
    model = cfg.model
    if not model.tokenizer:
      return {}
    return {
      "tokenizer": StageRef(
        model.tokenizer, tuple(model.tokenizer_overrides), artifact=SEMANTIC_IDS, setting="model.tokenizer"
      )
    }

  @functools.cached_property
  def item_codes(self) -> tuple[np.ndarray, dict]:
    """The tokenizer stage's table and meta, checked against this catalogue and the pinned version."""
    model = self.cfg.model
    table, meta = read_semantic_ids(self.stages.folder("tokenizer"))
    if len(table) != self.data.num_items + 1:
      raise ConfigError(
        f"the semantic-ID table of {model.tokenizer} covers {len(table) - 1} items; "
        f"{self.data.name} has {self.data.num_items}"
      )
    pinned = model.semantic_ids_version
    if pinned and pinned != meta["version"]:
      raise ConfigError(
        f"{self.cfg.model_name} was configured for semantic-ID table {pinned}, but its "
        f"tokenizer stage {model.tokenizer} gives table {meta['version']}; retrain the "
        "retriever (a fresh --workdir) or restore the tokenizer run it was trained on"
      )
    return table, meta

  def train_before(self) -> bool:
    return bool(getattr(self.cfg.model, "mask_history", False))

  def configure(self) -> ExperimentConfig:
    if self.cfg.model.tokenizer:
      table, meta = self.item_codes
      self.cfg = dataclasses.replace(self.cfg, model=self.cfg.model.with_semantic_ids(table, meta["version"]))
    return super().configure()

  def prepare(self, placed, key) -> None:
    del key
    if self.cfg.model.tokenizer:
      self.put_tables(placed, lambda model, trained: model.set_item_codes(self.item_codes[0], trained))


# ---- export ---------------------------------------------------------------------------------------------------


def semantic_id_table(workdir: str | Path) -> tuple[np.ndarray, dict]:
  """The item -> code table of a tokenizer run, or the one a semantic-ID retriever was trained on."""
  workdir = Path(workdir)
  if artifacts.exists(workdir, SEMANTIC_IDS):
    return read_semantic_ids(workdir)
  run = restore(workdir)  # the table it was trained on (added items are the run's overlay)
  if not protocols.provides(run.model, protocols.SemanticIDRetriever):
    raise ValueError(
      f"{workdir} is a {run.config.model_name} run: it has no semantic IDs (train a tokenizer "
      "such as rqvae or rqkmeans, or a generative retriever such as tiger)"
    )
  table = np.asarray(run.model.item_codes[...])
  stats = code_stats(table[1:, :-1], int(table[1:, :-1].max()) + 1)
  return table, {
    "version": run.config.model.semantic_ids_version,
    "stats": stats,
    "items": int(table.shape[0] - 1),
    "digits": int(table.shape[1]),
  }


def export_semantic_ids(workdir: str | Path, out: str | Path | None = None) -> Path:
  """Writes CSV (item, title, c0..cL) or JSON ({"version", "stats", "items": {raw id: [codes]}}), atomically."""
  workdir = Path(workdir)
  table, meta = semantic_id_table(workdir)
  data = load_dataset(restore(workdir).config.data)
  if len(table) != data.num_items + 1:
    raise ValueError(f"the semantic-ID table has {len(table) - 1} items but {data.name} has {data.num_items}")
  out = Path(out) if out else workdir / f"{SEMANTIC_IDS}.csv"
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
