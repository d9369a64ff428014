"""Ranking and beyond-accuracy metrics for next-item recommendation with one target per user (leave-one-out).

Two layers. The jnp functions run inside the jitted eval step on [B, N] arrays sharded over the batch; column n
is item id n, column 0 is the padding item and is never a candidate. The NumPy functions run once on the
gathered per-user outputs; in them item id 0 in a top-K list marks an empty slot and is ignored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _allowed(exclude_BxN: jax.Array) -> jax.Array:
  """Items that may be candidates: not excluded and not the padding column."""
  item_1xN = jnp.arange(exclude_BxN.shape[1])[None, :]
  return jnp.logical_and(jnp.logical_not(exclude_BxN), item_1xN != 0)


def _is_target(shape: tuple[int, int], target_B: jax.Array) -> jax.Array:
  item_1xN = jnp.arange(shape[1])[None, :]
  return item_1xN == target_B[:, None]


def target_rank(scores_BxN: jax.Array, target_B: jax.Array, exclude_BxN: jax.Array) -> jax.Array:
  """0-based rank of the target: how many candidates score at least as high as it does.

  Candidates are the items not excluded, other than the padding item 0 and the target itself. Ties are
  pessimistic (an equal score counts as ahead), so a constant model gets the worst rank. NaN scores count as
  -inf. The target is ranked even where `exclude_BxN` marks it.
  """
  scores_BxN = jnp.where(jnp.isnan(scores_BxN), -jnp.inf, scores_BxN)
  target_score_B = jnp.take_along_axis(scores_BxN, target_B[:, None].astype(jnp.int32), axis=1)[:, 0]
  candidate_BxN = jnp.logical_and(_allowed(exclude_BxN), jnp.logical_not(_is_target(scores_BxN.shape, target_B)))
  ahead_BxN = jnp.logical_and(candidate_BxN, scores_BxN >= target_score_B[:, None])
  return jnp.sum(ahead_BxN, axis=1, dtype=jnp.int32)


def ranking_metrics(rank_B: jax.Array, ks: tuple[int, ...]) -> dict[str, jax.Array]:
  """Per-example recall@k (= HR@k with one target), ndcg@k = 1/log2(rank+2) and mrr@k = 1/(rank+1), each 0
  when rank >= k."""
  rank_B = rank_B.astype(jnp.float32)
  out = {}
  for k in ks:
    hit_B = rank_B < k
    out[f"recall@{k}"] = hit_B.astype(jnp.float32)
    out[f"ndcg@{k}"] = jnp.where(hit_B, 1.0 / jnp.log2(rank_B + 2.0), 0.0)
    out[f"mrr@{k}"] = jnp.where(hit_B, 1.0 / (rank_B + 1.0), 0.0)
  return out


def sampled_exclude(key: jax.Array, exclude_BxN: jax.Array, target_B: jax.Array, num_negatives: int) -> jax.Array:
  """The exclusion mask of the "sampled:N" protocol: exactly `num_negatives` negatives drawn uniformly without
  replacement from the allowed items (not excluded, not padding, not the target), plus the target, are left.

  Where a row has no more than `num_negatives` allowed items, all of them stay candidates. The draw is
  deterministic given the key and the batch layout (row b uses the key's stream at row b), not the sharding.
  """
  is_target_BxN = _is_target(exclude_BxN.shape, target_B)
  allowed_BxN = jnp.logical_and(_allowed(exclude_BxN), jnp.logical_not(is_target_BxN))
  # Threshold at the N-th largest random key (no scatter, so it shards by row); exact key ties at the
  # threshold go to the lower item ids so that exactly N are kept.
  key_BxN = jnp.maximum(jax.random.bits(key, exclude_BxN.shape, jnp.uint32), 1)
  key_BxN = jnp.where(allowed_BxN, key_BxN, 0)
  kth_Bx1 = jax.lax.top_k(key_BxN, num_negatives)[0][:, -1:]
  above_BxN = jnp.logical_and(allowed_BxN, key_BxN > kth_Bx1)
  at_BxN = jnp.logical_and(allowed_BxN, key_BxN == kth_Bx1)
  room_Bx1 = num_negatives - jnp.sum(above_BxN, axis=1, keepdims=True)
  at_BxN = jnp.logical_and(at_BxN, jnp.cumsum(at_BxN, axis=1) <= room_Bx1)
  keep_BxN = jnp.logical_or(jnp.logical_or(above_BxN, at_BxN), is_target_BxN)
  return jnp.logical_not(keep_BxN)


def top_k_items(scores_BxN: jax.Array, exclude_BxN: jax.Array, k: int) -> jax.Array:
  """Ids of the k best allowed items, best first (equal scores: lower id first). Excluded items and the
  padding item are never returned; where fewer than k items are allowed the remaining slots hold 0."""
  allowed_BxN = _allowed(exclude_BxN)
  lowest = jnp.finfo(scores_BxN.dtype).min
  # Allowed items with NaN/-inf scores still rank above every excluded one.
  scores_BxN = jnp.where(jnp.logical_or(jnp.isnan(scores_BxN), scores_BxN == -jnp.inf), lowest, scores_BxN)
  masked_BxN = jnp.where(allowed_BxN, scores_BxN, -jnp.inf)
  _, ids_BxK = jax.lax.top_k(masked_BxN, k)
  ok_BxK = jnp.take_along_axis(allowed_BxN, ids_BxK, axis=1)
  return jnp.where(ok_BxK, ids_BxK, 0).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------------------
# Host side: once per evaluation, on gathered [U, K] top-K lists and [U] per-user metrics.


def coverage(topk_UxK: np.ndarray, num_items: int) -> float:
  """Fraction of the catalogue (items 1..num_items) that appears in at least one list."""
  ids = np.unique(np.asarray(topk_UxK))
  ids = ids[(ids >= 1) & (ids <= num_items)]
  return float(ids.size / num_items)


def intra_list_diversity(topk_UxK: np.ndarray, item_features_NxF: np.ndarray, chunk: int = 4096) -> float:
  """Mean over users of the mean pairwise cosine distance (1 - cos) between the features of the listed items.

  `item_features_NxF` is indexed by item id (row 0 is padding). An item with all-zero features has cosine
  similarity 0 with everything (distance 1). Users with fewer than two items in their list are left out of
  the mean; 0.0 if no user has two.
  """
  topk_UxK = np.asarray(topk_UxK)
  feats_NxF = np.asarray(item_features_NxF, np.float64)
  norm_N = np.linalg.norm(feats_NxF, axis=1)
  unit_NxF = feats_NxF / np.where(norm_N > 0, norm_N, 1.0)[:, None]
  k = topk_UxK.shape[1]
  upper_KxK = np.triu(np.ones((k, k), bool), 1)
  per_user = []
  for start in range(0, topk_UxK.shape[0], chunk):
    ids_CxK = topk_UxK[start : start + chunk]
    valid_CxK = ids_CxK != 0
    unit_CxKxF = unit_NxF[ids_CxK]
    sim_CxKxK = np.einsum("ckf,cjf->ckj", unit_CxKxF, unit_CxKxF)
    pair_CxKxK = valid_CxK[:, :, None] & valid_CxK[:, None, :] & upper_KxK[None]
    pairs_C = pair_CxKxK.sum(axis=(1, 2))
    dist_C = np.where(pair_CxKxK, 1.0 - sim_CxKxK, 0.0).sum(axis=(1, 2))
    per_user.append(dist_C[pairs_C > 0] / pairs_C[pairs_C > 0])
  per_user = np.concatenate(per_user) if per_user else np.zeros(0)
  return float(per_user.mean()) if per_user.size else 0.0


def novelty(topk_UxK: np.ndarray, item_counts_N: np.ndarray, num_users: int | None = None) -> float:
  """Mean self-information of the recommended items, -log2 p(i), averaged per list then over users.

  p(i) = (count(i) + 1) / (num_users + 1), with count(i) the number of training users who interacted with
  item i (`item_counts_N` indexed by item id): the fraction of users, add-one smoothed so unseen items are
  finite (log2(num_users + 1) bits) and an item every user saw is 0 bits. `num_users` defaults to the number
  of lists (leave-one-out evaluates every user). Users with empty lists are left out.
  """
  topk_UxK = np.asarray(topk_UxK)
  counts_N = np.asarray(item_counts_N, np.float64)
  num_users = topk_UxK.shape[0] if num_users is None else num_users
  info_N = -np.log2((counts_N + 1.0) / (num_users + 1.0))
  valid_UxK = topk_UxK != 0
  n_U = valid_UxK.sum(axis=1)
  info_U = np.where(valid_UxK, info_N[topk_UxK], 0.0).sum(axis=1)
  keep_U = n_U > 0
  return float((info_U[keep_U] / n_U[keep_U]).mean()) if keep_U.any() else 0.0


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
  """The mean of every per-user metric."""
  return {name: float(np.mean(values)) for name, values in per_user.items()}


def group_metrics(per_user: dict[str, np.ndarray], groups_U: list[str]) -> dict:
  """Per group value: the user count and the mean of every metric; per metric: the disparity (max group mean
  - min group mean) and the worst group (lowest mean; first by name on ties). Groups are sorted by name.

  {"groups": {"F": {"users": 273, "ndcg@10": ...}, ...},
   "disparity": {"ndcg@10": {"max_minus_min": ..., "worst": "F"}, ...}}
  """
  groups_U = np.asarray([str(g) for g in groups_U])
  for name, values in per_user.items():
    if len(values) != len(groups_U):
      raise ValueError(f"metric {name!r} has {len(values)} users but groups has {len(groups_U)}")
  out = {"groups": {}, "disparity": {}}
  for g in sorted(set(groups_U.tolist())):
    in_group = groups_U == g
    row = {"users": int(in_group.sum())}
    row.update({name: float(np.mean(np.asarray(values)[in_group])) for name, values in per_user.items()})
    out["groups"][g] = row
  for name in per_user:
    means = {g: row[name] for g, row in out["groups"].items()}
    if not means:
      continue
    worst = min(means, key=means.get)
    out["disparity"][name] = {"max_minus_min": max(means.values()) - means[worst], "worst": worst}
  return out


# ---------------------------------------------------------------------------------------------------------
# Pointwise (click-through) metrics: one score and one 0/1 label per example.


def _average_ranks(scores_M: np.ndarray, groups_M: np.ndarray) -> np.ndarray:
  """1-based rank of each score within its group, ties sharing their average rank."""
  order = np.lexsort((scores_M, groups_M))
  s, g = scores_M[order], groups_M[order]
  new_run = np.concatenate([[True], (s[1:] != s[:-1]) | (g[1:] != g[:-1])])
  run_id = np.cumsum(new_run) - 1
  run_start = np.flatnonzero(new_run)
  run_end = np.append(run_start[1:], len(s))
  group_start = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
  first_of_group = np.repeat(group_start, np.diff(np.append(group_start, len(s))))
  ranks = np.empty(len(s), np.float64)
  ranks[order] = ((run_start + run_end + 1) / 2.0)[run_id] - first_of_group
  return ranks


def _grouped_auc(labels_M, scores_M, groups_M) -> tuple[np.ndarray, np.ndarray]:
  """(AUC per group, mask of groups with both a positive and a negative); groups are 0..G-1."""
  labels_M = np.asarray(labels_M) > 0
  scores_M = np.asarray(scores_M, np.float64)
  if np.isnan(scores_M).any():
    raise ValueError("scores contain NaN; AUC is undefined")
  ranks = _average_ranks(scores_M, groups_M)
  num = int(groups_M.max()) + 1 if len(groups_M) else 0
  pos = np.bincount(groups_M, weights=labels_M, minlength=num)
  neg = np.bincount(groups_M, minlength=num) - pos
  rank_sum = np.bincount(groups_M, weights=np.where(labels_M, ranks, 0.0), minlength=num)
  both = (pos > 0) & (neg > 0)
  auc = (rank_sum - pos * (pos + 1) / 2) / np.where(both, pos * neg, 1.0)
  return np.where(both, auc, np.nan), both


def auc(labels_M: np.ndarray, scores_M: np.ndarray) -> float:
  """Area under the ROC curve (Mann-Whitney U / (P * N)); ties between a positive and a negative count 1/2.
  NaN unless there is at least one positive and one negative."""
  groups = np.zeros(len(labels_M), np.int64)
  return float(_grouped_auc(labels_M, scores_M, groups)[0][0]) if len(groups) else float("nan")


def uauc(users_M: np.ndarray, labels_M: np.ndarray, scores_M: np.ndarray) -> tuple[float, int]:
  """(mean of per-user AUC over the users with both a positive and a negative, how many such users);
  an unweighted mean, NaN when no user qualifies."""
  _, users = np.unique(np.asarray(users_M), return_inverse=True)
  per_user, both = _grouped_auc(labels_M, scores_M, users.ravel())
  counted = int(both.sum())
  return (float(per_user[both].mean()) if counted else float("nan")), counted


def logloss(labels_M: np.ndarray, probs_M: np.ndarray, eps: float = 1e-7) -> float:
  """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps])."""
  p = np.clip(np.asarray(probs_M, np.float64), eps, 1 - eps)
  y = np.asarray(labels_M, np.float64)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
