"""Tasks: what the trainer feeds a model and how it validates it, chosen by the model config's `task`.

  next_item        user histories → the next item (SASRec, HSTU, BERT4Rec, TIGER); ranking metrics
  item_embeddings  item content embeddings → reconstruct/quantise them (semantic-ID tokenizers); the
                   model's own statistics

The trainer only talks to a Task: `train_dataset(...)` (a grain MapDataset whose [step] is the batch of that
step), `evaluator(placed)` → fn(params, other, split) → (summary, groups), `protocol()`, `best_mode`.
"""
from __future__ import annotations

import jax
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.data.pipeline import next_item_train
from genrec.train import evaluate as eval_lib
from genrec.train import sharding
from genrec.train.state import PlacedModel


class NextItemTask:
  best_mode = "max"

  def __init__(self, cfg: ExperimentConfig, data):
    self.cfg, self.data = cfg, data
    eval_lib.parse_candidates(cfg.eval.candidates)

  def train_dataset(self, *, process_index: int, process_count: int):
    cfg = self.cfg
    return next_item_train(self.data, max_len=cfg.data.max_len, global_batch=cfg.trainer.batch_size,
                           seed=cfg.data.seed, window=cfg.data.train_window, process_index=process_index,
                           process_count=process_count)

  def evaluator(self, placed):
    runner = make_eval_runner(placed, self.cfg)

    def evaluate(params, other, split):
      step = lambda batch, key: runner(params, other, placed.rngs, batch, key)
      return eval_lib.evaluate(step, self.data, split, self.cfg.eval, max_len=self.cfg.data.max_len)

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


TASKS = {"next_item": NextItemTask}


def get_task(cfg: ExperimentConfig, data):
  name = getattr(cfg.model, "task", "next_item")
  if name not in TASKS:
    raise ConfigError(f"model {cfg.model_name!r} needs task {name!r}; known tasks: {sorted(TASKS)}")
  return TASKS[name](cfg, data)


def register_task(name: str, cls) -> None:
  TASKS[name] = cls
