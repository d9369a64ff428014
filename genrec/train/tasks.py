"""Tasks: what the trainer feeds a model and how it validates it, chosen by the model config's `task`.

  next_item        user histories → the next item (SASRec, HSTU, BERT4Rec, TIGER); ranking metrics
  item_embeddings  item content embeddings → reconstruct/quantise them (semantic-ID tokenizers); the
                   model's own statistics
  item_contrastive item pairs co-occurring in training sequences → InfoNCE (multimodal item encoders, mmenc);
                   held-out pair retrieval (genrec.train.contrastive)
  pointwise        labelled (user, item) examples → click probabilities (MF, CoLLM, TALLRec); AUC, UAUC
                   (genrec.train.pointwise)

The trainer only talks to a Task: `view` (what the model config's resolve() sees), `train_dataset(...)` (a
grain MapDataset whose [step] is the batch of that step), `evaluator(placed)` → fn(params, other, split) →
(summary, groups), `protocol()`, and the optional hooks `prepare(placed, key)` (before the optimizer is
built) and `finish(trainer, params, other)` (after training; returns extra results).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.data.pipeline import eval_examples, item_batches, next_item_train
from genrec.models.semantic_ids.collisions import code_stats, dedup_codes
from genrec.train import evaluate as eval_lib
from genrec.train import sharding, stages
from genrec.train.contrastive import ItemContrastiveTask
from genrec.train.pointwise import PointwiseTask
from genrec.train.state import PlacedModel


class NextItemTask:
  best_mode = "max"

  def __init__(self, cfg: ExperimentConfig, data):
    self.cfg, self.data = cfg, data
    self.view = data
    eval_lib.parse_candidates(cfg.eval.candidates)
    self.item_codes = self.item_content = None
    if getattr(cfg.model, "tokenizer", ""):
      self._semantic_ids()
    if getattr(cfg.model, "item_content", False):      # content-based retrievers (contentrec)
      self.item_content = stages.item_embeddings(data, cfg.data, progress=cfg.trainer.progress)
      self.cfg = dataclasses.replace(self.cfg, model=self.cfg.model.with_item_content(self.item_content))

  def _semantic_ids(self) -> None:
    """Runs (or reuses) the tokenizer stage a generative retriever depends on and sizes its codes."""
    model = self.cfg.model
    stage = stages.stage_config(model.tokenizer, model.tokenizer_overrides, self.cfg.data)
    table, meta = stages.read_semantic_ids(stages.run_stage(stage, data=self.data,
                                                                   progress=self.cfg.trainer.progress))
    if len(table) != self.data.num_items + 1:
      raise ConfigError(f"the semantic-ID table of {model.tokenizer} covers {len(table) - 1} items; "
                        f"{self.data.name} has {self.data.num_items}")
    pinned = model.semantic_ids_version
    if pinned and pinned != meta["version"]:
      raise ConfigError(f"{self.cfg.model_name} was configured for semantic-ID table {pinned}, but its "
                        f"tokenizer stage {model.tokenizer} gives table {meta['version']}; retrain the "
                        "retriever (a fresh --workdir) or restore the tokenizer run it was trained on")
    self.cfg = dataclasses.replace(self.cfg, model=model.with_semantic_ids(table, meta["version"]))
    self.item_codes = table

  def prepare(self, placed, key) -> None:
    """Loads the item -> semantic ID table into a generative retriever's state before training, or the item
    content table into a content-based one, with which items training sees (the others are new items)."""
    del key
    if self.item_codes is not None or self.item_content is not None:
      model = placed.model(train=True)
      trained = self.data.trained_items()
      if self.item_codes is not None:
        model.set_item_codes(self.item_codes, trained)
      if self.item_content is not None:
        model.set_item_content(self.item_content, trained)
      _, params, _, other = placed.split(model)
      # the tables were built on the host: each goes onto its sharding (the content table is item-sharded)
      placed.params = jax.device_put(params, placed.param_shardings)
      placed.other = jax.device_put(other, placed.other_shardings)

  def train_dataset(self, *, process_index: int, process_count: int):
    cfg = self.cfg
    return next_item_train(self.data, max_len=cfg.data.max_len, global_batch=cfg.trainer.batch_size,
                           seed=cfg.data.seed, window=cfg.data.train_window, process_index=process_index,
                           process_count=process_count)

  def evaluator(self, placed):
    runner = make_eval_runner(placed, self.cfg)

    examples = {}     # host arrays per split, built once: every validation reuses them

    def evaluate(params, other, split):
      step = lambda batch, key: runner(params, other, placed.rngs, batch, key)
      if split not in examples:
        examples[split] = eval_examples(self.data, split, max_len=self.cfg.data.max_len)
      return eval_lib.evaluate(step, self.data, split, self.cfg.eval, max_len=self.cfg.data.max_len,
                               examples=examples[split])

    return evaluate

  def protocol(self) -> dict:
    return eval_lib.protocol(self.cfg.eval, self.data)


def make_eval_runner(placed: PlacedModel, cfg: ExperimentConfig):
  """A jitted (params, other, rngs, batch_np, key) -> (per_row, top) over the mesh."""
  step = eval_lib.make_eval_step(cfg.eval)
  graphdef = placed.eval_graphdef
  mesh = placed.mesh
  rep = sharding.replicated(mesh)
  bsh = sharding.batch_sharding(mesh)

  def fn(params, other, rngs, batch, key):
    return step(nnx.merge(graphdef, params, rngs, other), batch, key)

  jitted = jax.jit(fn, out_shardings=rep)

  def run(params, other, rngs, batch_np, key):
    batch = {k: jax.make_array_from_callback(v.shape, bsh, lambda idx, v=v: v[idx]) for k, v in batch_np.items()}
    return jitted(params, other, rngs, batch, key)

  return run


@dataclasses.dataclass(frozen=True)
class ItemTable:
  """What an item-embeddings model's config `resolve()` sees."""
  name: str
  num_items: int
  item_embeddings: np.ndarray


class ItemEmbeddingsTask:
  """Content models over the catalogue (semantic-ID tokenizers). Validation = the model's own loss metrics
  over every item plus code statistics; the finished run exports the item -> semantic ID table."""
  best_mode = "min"

  def __init__(self, cfg: ExperimentConfig, data):
    self.cfg, self.data = cfg, data
    self.embeddings = stages.item_embeddings(data, cfg.data, progress=cfg.trainer.progress)
    self.view = ItemTable(data.name, data.num_items, self.embeddings)

  def train_dataset(self, *, process_index: int, process_count: int):
    return item_batches(self.embeddings, global_batch=self.cfg.trainer.batch_size, seed=self.cfg.data.seed,
                        process_index=process_index, process_count=process_count)

  def prepare(self, placed, key) -> None:
    """k-means initialisation of the codebooks on the whole catalogue, when the model asks for it."""
    model = placed.model(train=True)
    if hasattr(model, "init_codebooks") and getattr(self.cfg.model, "kmeans_init", True):
      model.init_codebooks(self.embeddings[1:], key)
      _, placed.params, _, placed.other = placed.split(model)

  def codes(self, placed, params, other) -> np.ndarray:
    """Codes [N, L] of items 1..N under `params`."""
    model = nnx.merge(placed.eval_graphdef, params, placed.rngs, other)
    encode = jax.jit(lambda m, x: m.encode({"embedding": x}))
    chunk = self.cfg.eval.batch_size
    x = self.embeddings[1:]
    return np.concatenate([np.asarray(encode(model, x[i:i + chunk])) for i in range(0, len(x), chunk)])

  def evaluator(self, placed):
    graphdef, cfg = placed.eval_graphdef, self.cfg
    rep = sharding.replicated(placed.mesh)
    loss = jax.jit(lambda params, other, rngs, batch: nnx.merge(graphdef, params, rngs, other).loss(batch)[1],
                   out_shardings=rep)

    def evaluate(params, other, split):
      del split                                      # the catalogue is the same for valid and test
      n, chunk = self.data.num_items, cfg.eval.batch_size
      totals: dict[str, float] = {}
      for start in range(0, n, chunk):
        items = 1 + (np.arange(start, start + chunk) % n)   # the last chunk wraps around: fixed shapes
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
      return {"semantic_ids": stages.write_semantic_ids(trainer.workdir, table, stats, self.cfg)}
    return {}

  def protocol(self) -> dict:
    return {"dataset": self.data.name, "items": self.data.num_items, "split": "catalogue",
            "embeddings": self.cfg.data.item_embeddings, "candidates": "-", "ks": [],
            "users": self.data.num_users, "ties": "-"}


TASKS = {"next_item": NextItemTask, "item_embeddings": ItemEmbeddingsTask, "pointwise": PointwiseTask,
         "item_contrastive": ItemContrastiveTask}


def get_task(cfg: ExperimentConfig, data):
  name = getattr(cfg.model, "task", "next_item")
  if name not in TASKS:
    raise ConfigError(f"model {cfg.model_name!r} needs task {name!r}; known tasks: {sorted(TASKS)}")
  return TASKS[name](cfg, data)


def register_task(name: str, cls) -> None:
  TASKS[name] = cls
