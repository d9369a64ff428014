"""The pointwise task: labelled (user, item) examples → click probabilities, scored by AUC, UAUC and logloss.

Models with `task = "pointwise"` (MF; the LLM-CF family: CoLLM, TALLRec) expose `predict(batch) -> [B]`
probabilities and `loss(batch)`. Examples and split come from `genrec.data.pointwise`: every rated
interaction, label = rating > 3, global time order cut 80/10/10 into train/valid/test. Validation predicts
every example of the split in fixed-size jitted batches (the last one padded, its padding rows dropped).
A model with `user_embeddings()` and `item_embeddings()` leaves them in RUN/cf/ when training finishes
(`genrec.models.cf_artifact`), for the LLM-CF models to read. A model config that names a prompt template
(`model.prompt`, the LLM-CF models) gets its examples as prompt token ids: `genrec.train.prompted`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.config import ExperimentConfig
from genrec.data.pipeline import batches
from genrec.data.pointwise import POSITIVE_ABOVE, pointwise_data, pointwise_train
from genrec.models.cf_artifact import save_cf_artifact
from genrec.train import metrics, sharding
from genrec.train.state import PlacedModel


def make_predictor(placed: PlacedModel, batch_size: int):
  """(params, other, arrays) -> float32 [M] probabilities for every row of `arrays` (every key but "label"
  reaches predict()), in jitted batches of `batch_size` split over the mesh's data axes."""
  graphdef, mesh = placed.eval_graphdef, placed.mesh
  bsh = sharding.batch_sharding(mesh)

  def fn(params, other, rngs, batch):
    return nnx.merge(graphdef, params, rngs, other).predict(batch).astype(jnp.float32)

  jitted = jax.jit(fn, out_shardings=sharding.replicated(mesh))

  def predict(params, other, arrays: dict[str, np.ndarray]) -> np.ndarray:
    out = []
    for batch in batches({k: v for k, v in arrays.items() if k != "label"}, batch_size):   # never the label
      valid = batch.pop("valid")
      placed_batch = {k: jax.make_array_from_callback(v.shape, bsh, lambda idx, v=v: v[idx])
                      for k, v in batch.items()}
      out.append(np.asarray(jitted(params, other, placed.rngs, placed_batch))[valid])
    return np.concatenate(out) if out else np.zeros(0, np.float32)

  return predict


def pointwise_metrics(users_M, labels_M, probs_M) -> dict[str, float]:
  value, counted = metrics.uauc(users_M, labels_M, probs_M)
  return {"auc": metrics.auc(labels_M, probs_M), "uauc": value, "uauc_users": counted,
          "logloss": metrics.logloss(labels_M, probs_M)}


class PointwiseTask:
  best_mode = "max"

  def __init__(self, cfg: ExperimentConfig, data):
    self.cfg, self.data = cfg, data
    self.points = pointwise_data(data, cfg.data)
    self.prompts = None
    if getattr(cfg.model, "prompt", ""):         # LLM-CF models: examples become prompts (genrec.train.prompted)
      from genrec.train.prompted import PromptedExamples

      self.prompts = PromptedExamples(cfg, data, self.points)
    self.view = self.points if self.prompts is None else self.prompts.view

  def train_dataset(self, *, process_index: int, process_count: int):
    ds = pointwise_train(self.points, global_batch=self.cfg.trainer.batch_size, seed=self.cfg.data.seed,
                         process_index=process_index, process_count=process_count)
    if self.prompts is None:
      return ds
    return self.prompts.train(ds, process_index=process_index, process_count=process_count)

  def prepare(self, placed, key) -> None:
    del key
    if self.prompts is not None:
      self.prompts.prepare(placed)

  def split(self, name: str) -> dict[str, np.ndarray]:
    arrays = self.points.split(name)
    return arrays if self.prompts is None else self.prompts.split(name, arrays)

  def evaluator(self, placed):
    predict = make_predictor(placed, self.cfg.eval.batch_size)

    def evaluate(params, other, split):
      arrays = self.split(split)
      probs = predict(params, other, arrays)
      return pointwise_metrics(arrays["user"], arrays["label"], probs), {}

    return evaluate

  def finish(self, trainer, params, other) -> dict:
    """Exports the user/item embeddings of a CF model to RUN/cf/."""
    model = nnx.merge(trainer.placed.eval_graphdef, params, trainer.placed.rngs, other)
    if not (hasattr(model, "user_embeddings") and hasattr(model, "item_embeddings")):
      return {}
    gather = jax.jit(lambda m: (m.user_embeddings(), m.item_embeddings()),
                     out_shardings=sharding.replicated(trainer.placed.mesh))
    users, items = gather(model)
    if jax.process_index() != 0:
      return {}
    return {"cf_artifact": save_cf_artifact(trainer.workdir, np.asarray(users), np.asarray(items),
                                            model=self.cfg.model_name, dataset=self.points.name)}

  def protocol(self) -> dict:
    p = self.points
    return {"dataset": p.name, "users": p.num_users, "items": p.num_items, "task": "pointwise",
            "split": "global time 80/10/10 (sorted by timestamp, then user, then the user's own order)",
            "label": f"rating > {POSITIVE_ABOVE:g}", "history": f"last {p.history.shape[1]} positive items",
            "candidates": "-", "ks": [], "ties": "a positive scored equal to a negative counts 1/2 in AUC",
            "examples": {k: p.stats[k] for k in ("train", "valid", "test")},
            "uauc": "unweighted mean over users with a positive and a negative in the split",
            **({} if self.prompts is None else {"prompt": self.prompts.protocol()})}
