"""The pointwise task: labelled (user, item) examples → click probabilities, scored by AUC, UAUC and logloss.

Models with `task = "pointwise"` (MF) expose `predict(batch) -> [B]` probabilities and `loss(batch)`
(protocols.Predictor); the LLM-CF models' task "prompted" (genrec.families.llm_cf.prompted) is this one with the
examples as prompt token ids. Examples and split come from `genrec.data.pointwise`: every rated
interaction, label = rating > 3, global time order cut 80/10/10 into train/valid/test. Validation predicts
every example of the split in fixed-size jitted batches (the last one padded, its padding rows dropped).
A model with `user_embeddings()` and `item_embeddings()` (protocols.CFExporter) leaves them as the run artifact
"cf" when training finishes (genrec.families.llm_cf.cf), for the LLM-CF models to read.

Candidate ranking (LLaRA's HitRatio@1), on when `eval.candidates="sampled:N"`: each of the first
`eval.ranked_examples` POSITIVE examples of a split (time order) is scored against N negatives — items its user
never rated in any split, drawn uniformly without replacement by rng (eval.seed, the example's global index) —
each candidate in the target's place of the same example (history, prompt template). hr@1 = the fraction whose
target scores strictly above every negative (a tie is a miss); ndcg@{N+1} uses the same pessimistic rank.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.data.pipeline import batches
from genrec.data.pointwise import POSITIVE_ABOVE, PointwiseData, pointwise_data, pointwise_train
from genrec.families.llm_cf.cf import CF, save_cf_artifact
from genrec.models import protocols
from genrec.train import metrics, sharding
from genrec.train.evaluate import parse_candidates
from genrec.train.state import PlacedModel
from genrec.train.tasks import Task, register_task


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
    for batch in batches({k: v for k, v in arrays.items() if k != "label"}, batch_size):  # never the label
      valid = batch.pop("valid")
      placed_batch = {k: jax.make_array_from_callback(v.shape, bsh, lambda idx, v=v: v[idx]) for k, v in batch.items()}
      out.append(np.asarray(jitted(params, other, placed.rngs, placed_batch))[valid])
    return np.concatenate(out) if out else np.zeros(0, np.float32)

  return predict


def pointwise_metrics(users_M, labels_M, probs_M) -> dict[str, float]:
  value, counted = metrics.uauc(users_M, labels_M, probs_M)
  return {
    "auc": metrics.auc(labels_M, probs_M),
    "uauc": value,
    "uauc_users": counted,
    "logloss": metrics.logloss(labels_M, probs_M),
  }


def sample_negatives(points: PointwiseData, rows_R, num_neg: int, seed: int) -> np.ndarray:
  """int32 [R, num_neg]: for example row r (global index), distinct items its user rated in no split, drawn
  uniformly by rng (seed, r) — the same whatever batches or other rows are asked for."""
  rows_R = np.asarray(rows_R, np.int64)
  by_user = np.argsort(points.user, kind="stable")
  starts = np.searchsorted(points.user[by_user], np.arange(points.num_users + 1))
  catalogue = np.arange(1, points.num_items + 1)
  out = np.zeros((len(rows_R), num_neg), np.int32)
  for i, r in enumerate(rows_R):
    u = points.user[r]
    unseen = np.setdiff1d(catalogue, points.item[by_user[starts[u] : starts[u + 1]]], assume_unique=False)
    if len(unseen) < num_neg:
      raise ConfigError(
        f"eval.candidates=sampled:{num_neg}: user {u} of {points.name} rated all but "
        f"{len(unseen)} of the {points.num_items} items; lower N"
      )
    out[i] = np.random.default_rng((seed, int(r))).choice(unseen, num_neg, replace=False)
  return out


def candidate_metrics(scores_RxC) -> dict[str, float]:
  """Column 0 is the target. Pessimistic rank: a negative scored equal to the target ranks ahead of it."""
  scores_RxC = np.asarray(scores_RxC, np.float64)
  num, width = scores_RxC.shape
  if num == 0:
    return {"hr@1": float("nan"), f"ndcg@{width}": float("nan"), "ranked": 0}
  rank_R = (scores_RxC[:, 1:] >= scores_RxC[:, :1]).sum(axis=1)
  return {
    "hr@1": float(np.mean(rank_R == 0)),
    f"ndcg@{width}": float(np.mean(1 / np.log2(rank_R + 2))),
    "ranked": int(num),
  }


@register_task("pointwise")
class PointwiseTask(Task):
  requires = (protocols.Trainable, protocols.Predictor)
  exports = (CF,)
  splits = ("temporal",)  # the global-time cut of genrec.data.pointwise, at 80% and 90% of the examples

  def __init__(self, cfg: ExperimentConfig, data, stages=None):
    super().__init__(cfg, data, stages)
    if tuple(cfg.eval.temporal_cuts) != (0.8, 0.9):
      raise ConfigError(
        f"eval.temporal_cuts={list(cfg.eval.temporal_cuts)}: pointwise tasks cut at 0.8, 0.9 of the examples only"
      )
    self.points = pointwise_data(data, cfg.data)
    kind, num_neg = parse_candidates(cfg.eval.candidates)
    self.num_neg = num_neg if kind == "sampled" else 0
    if cfg.eval.ranked_examples < 0:
      raise ConfigError(f"eval.ranked_examples={cfg.eval.ranked_examples}: need >= 0 (0 = every positive)")
    self._ranked = {}
    # Drawn now, so a catalogue too small for N negatives fails before training, not at the first evaluation.
    self._candidates = {s: self._draw(s) for s in ("valid", "test")} if self.num_neg else {}

  def train_dataset(self, *, process_index: int, process_count: int):
    return pointwise_train(
      self.points,
      global_batch=self.cfg.trainer.batch_size,
      seed=self.cfg.data.seed,
      process_index=process_index,
      process_count=process_count,
    )

  def inputs(self, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model inputs of examples `arrays` (of split `name`): the examples themselves here."""
    del name
    return arrays

  def split(self, name: str) -> dict[str, np.ndarray]:
    return self.inputs(name, self.points.split(name))

  def _draw(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(the ranked examples' global indices [R], their candidates [R, 1 + N], the target first)."""
    span, cap = self.points.rows(name), self.cfg.eval.ranked_examples
    rows_R = span.start + np.flatnonzero(self.points.label[span] > 0)
    rows_R = rows_R[:cap] if cap else rows_R
    negatives_RxN = sample_negatives(self.points, rows_R, self.num_neg, self.cfg.eval.seed)
    return rows_R, np.concatenate([self.points.item[rows_R][:, None], negatives_RxN], 1)

  def ranked(self, name: str) -> dict[str, np.ndarray]:
    """The candidate-ranking rows of one split: R examples x (target + N negatives), row-major, each a
    copy of its example with the candidate as item ("rows" [R] = the examples' global indices)."""
    if name not in self._ranked:
      rows_R, items_RxC = self._candidates[name]
      width = items_RxC.shape[1]
      arrays = {
        "user": np.repeat(self.points.user[rows_R], width),
        "item": items_RxC.reshape(-1),
        "history": np.repeat(self.points.history[rows_R], width, axis=0),
      }
      self._ranked[name] = {**self.inputs(f"{name}/ranked", arrays), "rows": rows_R}
    return self._ranked[name]

  def evaluator(self, placed):
    predict = make_predictor(placed, self.cfg.eval.batch_size)

    def evaluate(params, other, split):
      arrays = self.split(split)
      probs = predict(params, other, arrays)
      out = pointwise_metrics(arrays["user"], arrays["label"], probs)
      if self.num_neg:
        ranked = self.ranked(split)
        scores = predict(params, other, {k: v for k, v in ranked.items() if k != "rows"})
        out.update(candidate_metrics(scores.reshape(len(ranked["rows"]), self.num_neg + 1)))
      return out, {}

    return evaluate

  def finish(self, trainer, params, other) -> dict:
    """Exports the user/item embeddings of a CF model (protocols.CFExporter) as the run artifact "cf"."""
    model = nnx.merge(trainer.placed.eval_graphdef, params, trainer.placed.rngs, other)
    if not protocols.provides(model, protocols.CFExporter):
      return {}
    gather = jax.jit(
      lambda m: (m.user_embeddings(), m.item_embeddings()), out_shardings=sharding.replicated(trainer.placed.mesh)
    )
    users, items = gather(model)
    if jax.process_index() != 0:
      return {}
    return {
      "cf_artifact": save_cf_artifact(
        trainer.workdir, np.asarray(users), np.asarray(items), model=self.cfg.model_name, dataset=self.points.name
      )
    }

  def protocol(self) -> dict:
    p = self.points
    return {
      "dataset": p.name,
      "users": p.num_users,
      "items": p.num_items,
      "task": "pointwise",
      "split": "temporal",
      "split_rule": "global time 80/10/10 of the examples (sorted by timestamp, then user, then the user's own order)",
      "label": f"rating > {POSITIVE_ABOVE:g}",
      "history": f"last {p.history.shape[1]} positive items",
      "candidates": self.cfg.eval.candidates if self.num_neg else "-",
      "ks": [],
      "ties": "a positive scored equal to a negative counts 1/2 in AUC",
      "examples": {k: p.stats[k] for k in ("train", "valid", "test")},
      "uauc": "unweighted mean over users with a positive and a negative in the split",
      **({"ranking": self.ranking_protocol()} if self.num_neg else {}),
    }

  def ranking_protocol(self) -> dict:
    cap, n = self.cfg.eval.ranked_examples, self.num_neg
    return {
      "candidates": f"the target + {n} negatives: items the user rated in no split (train, valid or test), "
      f"uniform without replacement, rng (eval.seed={self.cfg.eval.seed}, example index)",
      "examples": f"the first {cap} positive examples of each split in time order"
      if cap
      else "every positive example of each split",
      "scored": "P(yes) of the example with the candidate as its target (same history and prompt)",
      "metrics": ["hr@1", f"ndcg@{n + 1}"],
      "ties": "pessimistic: a negative scored equal to the target ranks ahead of it (hr@1 counts a miss)",
    }
