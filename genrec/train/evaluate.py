"""The evaluation protocol: rank each user's held-out item, then accuracy and beyond-accuracy metrics.

A model is scored through `score(batch) -> [B, N+1]` when it provides one (protocols.Scorer: exact ranks among all
candidates), otherwise through `recommend(batch, k)` (protocols.Recommender: ranks known up to k). The protocol
comes from EvalConfig and is returned with every result.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genrec.config import ConfigError, EvalConfig
from genrec.data import cold, splits
from genrec.data.pipeline import batches, eval_examples
from genrec.data.types import SeqData
from genrec.models import protocols
from genrec.models.common import seen_mask
from genrec.train import metrics


def parse_candidates(candidates: str) -> tuple[str, int]:
  if candidates in ("all", "all_minus_seen"):
    return candidates, 0
  if candidates.startswith("sampled:"):
    try:
      n = int(candidates.split(":", 1)[1])
    except ValueError:
      n = 0
    if n > 0:
      return "sampled", n
  raise ConfigError(f"eval.candidates must be 'all', 'all_minus_seen' or 'sampled:N', got {candidates!r}")


def check_ks(cfg: EvalConfig, data: SeqData) -> None:
  """Every cutoff must fit the candidates a case ranks (checked before training, not by XLA's top_k after it)."""
  kind, n = parse_candidates(cfg.candidates)
  candidates = n + 1 if kind == "sampled" else data.num_items
  too_big = [k for k in cfg.ks if k > candidates]
  if too_big:
    raise ConfigError(
      f"eval.ks={list(cfg.ks)}: cutoff {too_big[0]} is more than the {candidates} candidate items a case ranks "
      f"({data.name}, eval.candidates={cfg.candidates!r}); use cutoffs <= {candidates}"
    )


def protocol(cfg: EvalConfig, data: SeqData) -> dict:
  out = {
    "dataset": data.name,
    "split": "temporal" if isinstance(data, splits.TemporalSeqData) else "leave_one_out",  # what was computed
    "candidates": cfg.candidates,
    "ks": list(cfg.ks),
    "users": data.num_users,
    "items": data.num_items,
    "ties": "pessimistic (an item scored equal to the target ranks ahead of it)",
  }
  if data.cold_items is not None:
    out["cold_start"] = {
      "cold_items": int(len(data.cold_items)),
      "rule": cold.RULE,
      "interactions_removed": data.stats.get("interactions_removed_cold"),
    }
  if isinstance(data, splits.TemporalSeqData):
    out["temporal"] = data.split_stats()
  return out


def make_eval_step(cfg: EvalConfig) -> Callable:
  """(model, batch, key) -> per-row metrics and top-k ids; the caller jits it with a merged model."""
  kind, num_neg = parse_candidates(cfg.candidates)
  kmax = max(cfg.ks)

  def step(model, batch, key):
    target = batch["target"]
    if protocols.provides(model, protocols.Scorer):
      scores = model.score(batch).astype(jnp.float32)
      seen = seen_mask(batch["seen"], scores.shape[1])
      exclude = {"all": jnp.zeros_like(seen), "all_minus_seen": seen}.get(kind)
      if kind == "sampled":
        exclude = metrics.sampled_exclude(key, seen, target, num_neg)
      rank = metrics.target_rank(scores, target, exclude)
      top = metrics.top_k_items(scores, seen if kind == "sampled" else exclude, kmax)
    else:
      if kind != "all_minus_seen":
        raise ConfigError(f"{type(model).__name__} has no score(); only eval.candidates='all_minus_seen' applies")
      top, _ = model.recommend(batch, kmax)
      hit = top == target[:, None]
      rank = jnp.where(hit.any(-1), jnp.argmax(hit, -1), kmax).astype(jnp.int32)
    out = {**metrics.ranking_metrics(rank, cfg.ks), "rank": rank}
    if protocols.provides(model, protocols.GenerativeRetriever):  # how often free decoding invents items
      out[f"invalid_unconstrained@{kmax}"] = model.invalid_rate(batch, kmax).astype(jnp.float32)
    return out, top

  return step


def evaluate(
  run_step: Callable,
  data: SeqData,
  split: str,
  cfg: EvalConfig,
  *,
  max_len: int,
  users: np.ndarray | None = None,
  examples: dict | None = None,
) -> tuple[dict, dict]:
  """Runs `run_step(batch_np, key) -> (per_row, top)` (a jitted, sharded step) over every user of `split`
  (or over `examples`, the split's `eval_examples` when the caller keeps them between evaluations).

  Returns (summary, groups): summary holds the mean metrics plus coverage/diversity/novelty at each k; groups
  the per-group metrics of each `cfg.group_by` user feature, and "cold_start" (cold/warm target) when the data
  holds items out of training.
  """
  if examples is None:
    examples = eval_examples(data, split, max_len=max_len, users=users)
  key = jax.random.key(cfg.seed)
  rows, tops = [], []
  for i, batch in enumerate(batches(examples, cfg.batch_size)):
    per_row, top = run_step(batch, jax.random.fold_in(key, i))
    valid = batch["valid"]
    rows.append({k: np.asarray(v)[valid] for k, v in per_row.items()})
    tops.append(np.asarray(top)[valid])
  per_user = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
  top = np.concatenate(tops)
  rank = per_user.pop("rank")
  summary = metrics.summarize(per_user)
  counts = item_counts(data)
  for k in cfg.ks:
    summary[f"coverage@{k}"] = metrics.coverage(top[:, :k], data.num_items)
    summary[f"novelty@{k}"] = metrics.novelty(top[:, :k], counts)
    if data.item_genres is not None:
      summary[f"diversity@{k}"] = metrics.intra_list_diversity(top[:, :k], data.item_genres)
  summary["mean_rank"] = float(rank.mean()) + 1
  groups = {}
  user_ids = examples["user"]
  for name in cfg.group_by:
    if name in data.user_features:
      values = [data.user_features[name][u] for u in user_ids]
      groups[name] = metrics.group_metrics(per_user, values)
  if data.cold_items is not None:  # the cold-start protocol: cases whose target was held out of training
    groups["cold_start"] = metrics.group_metrics(
      per_user, np.where(cold.is_cold(data, examples["target"]), "cold", "warm").tolist()
    )
  return {k: float(v) for k, v in summary.items()}, groups


def item_counts(data: SeqData) -> np.ndarray:
  """Users who interacted with each item in training, [N+1] (the novelty popularity); computed once."""
  counts = getattr(data, "_train_item_counts", None)
  if counts is None:
    counts = np.zeros(data.num_items + 1, np.int64)
    for u in range(data.num_users):
      counts[np.unique(data.train_sequence(u))] += 1
    object.__setattr__(data, "_train_item_counts", counts)
  return counts
