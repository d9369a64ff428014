"""The engine's own task, `next_item`: user histories → the next item (SASRec, HSTU, BERT4Rec; the base of the
retrievers over semantic IDs and item content), ranked by `genrec.train.evaluate` under `cfg.eval`.

Batches (genrec.data.pipeline, left-padded, 0 = padding):
  train: {"inputs": int32 [B, L], "targets": int32 [B, L], "user": int32 [B]}   targets[t] = the item after inputs[t]
  eval:  {"history": int32 [B, L], "seen": int32 [B, S], "target": int32 [B], "user": int32 [B]}
A model provides `loss` and `recommend` (protocols.Recommender), and `score` (protocols.Scorer) for exact ranks.
"""

from __future__ import annotations

import jax
from flax import nnx

from genrec.config import ExperimentConfig
from genrec.data import splits as splits_lib
from genrec.data.pipeline import eval_examples, next_item_train
from genrec.models import protocols
from genrec.train import evaluate as eval_lib
from genrec.train import sharding
from genrec.train.state import PlacedModel
from genrec.train.tasks import Task, register_task


@register_task("next_item")
class NextItemTask(Task):
  requires = (protocols.Trainable, protocols.Recommender)
  splits = splits_lib.SPLITS

  def __init__(self, cfg: ExperimentConfig, data, stages=None):
    super().__init__(cfg, splits_lib.apply(data, cfg.eval), stages)
    eval_lib.parse_candidates(cfg.eval.candidates)
    eval_lib.check_ks(cfg.eval, data)

  def train_dataset(self, *, process_index: int, process_count: int):
    cfg = self.cfg
    return next_item_train(
      self.data,
      max_len=cfg.data.max_len,
      global_batch=cfg.trainer.batch_size,
      seed=cfg.data.seed,
      window=cfg.data.train_window,
      process_index=process_index,
      process_count=process_count,
      before=self.train_before(),
    )

  def train_before(self) -> bool:
    """Whether training rows carry the items older than their window ("before"; see next_item_train)."""
    return False

  def evaluator(self, placed):
    runner = make_eval_runner(placed, self.cfg)

    examples = {}  # host arrays per split, built once: every validation reuses them

    def evaluate(params, other, split):
      step = lambda batch, key: runner(params, other, placed.rngs, batch, key)
      if split not in examples:
        examples[split] = eval_examples(self.data, split, max_len=self.cfg.data.max_len)
      return eval_lib.evaluate(
        step, self.data, split, self.cfg.eval, max_len=self.cfg.data.max_len, examples=examples[split]
      )

    return evaluate

  def protocol(self) -> dict:
    return eval_lib.protocol(self.cfg.eval, self.data)

  def put_tables(self, placed, load) -> None:
    """Runs `load(model, trained)` on a live copy of a freshly placed model (it sets host-built item tables:
    codes, content), then puts the new states onto their shardings (item tables are item-sharded)."""
    model = placed.model(train=True)
    load(model, self.data.trained_items())
    _, params, _, other = placed.split(model)
    placed.params = jax.device_put(params, placed.param_shardings)
    placed.other = jax.device_put(other, placed.other_shardings)


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
