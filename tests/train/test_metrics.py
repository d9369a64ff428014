"""Metrics against hand-computed values.

The worked example: 2 users, 6 columns (item 0 is padding, items 1..5).

  user 0: scores [9.0, 0.5, 0.7, 0.95, 0.7, 0.1], target 2 (0.7), seen item 3 (0.95).
    Candidates 1, 4, 5 (padding 0 never, seen 3 excluded). Ahead of 0.7: item 4 (0.7, a tie) -> rank 1.
  user 1: scores [0.0, 0.2, 0.8, 0.6, 0.4, 0.9], target 3 (0.6), exclude marks items 1 and 3 (the target).
    Candidates 2, 4, 5. Ahead of 0.6: items 2 (0.8) and 5 (0.9) -> rank 2.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec.train import metrics

SCORES_BxN = np.array([[9.0, 0.5, 0.7, 0.95, 0.7, 0.1], [0.0, 0.2, 0.8, 0.6, 0.4, 0.9]], np.float32)
TARGET_B = np.array([2, 3], np.int32)
EXCLUDE_BxN = np.array([[0, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0]], bool)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def test_target_rank_worked_example():
  rank_B = metrics.target_rank(SCORES_BxN, TARGET_B, EXCLUDE_BxN)
  assert rank_B.dtype == jnp.int32
  np.testing.assert_array_equal(rank_B, [1, 2])


def test_target_rank_ties_are_pessimistic():
  # Constant model: every one of the 5 - 1 = 4 candidates ties with the target, so it is last, not first.
  scores_BxN = np.ones((1, 6), np.float32)
  rank_B = metrics.target_rank(scores_BxN, np.array([4]), np.zeros((1, 6), bool))
  np.testing.assert_array_equal(rank_B, [4])


def test_target_rank_nan_target_is_last():
  scores_BxN = np.array([[0.0, 0.1, np.nan, 0.3]], np.float32)
  np.testing.assert_array_equal(metrics.target_rank(scores_BxN, np.array([2]), np.zeros((1, 4), bool)), [2])


def test_target_rank_excluded_seen_and_padding():
  # Nothing excluded: user 0 also has seen item 3 (0.95) ahead -> 2; padding (9.0) still never counts.
  rank_B = metrics.target_rank(SCORES_BxN, TARGET_B, np.zeros_like(EXCLUDE_BxN))
  np.testing.assert_array_equal(rank_B, [2, 2])
  # Excluding everything but the target: rank 0 even though the padding column scores 9.0.
  rank_B = metrics.target_rank(SCORES_BxN, TARGET_B, np.ones_like(EXCLUDE_BxN))
  np.testing.assert_array_equal(rank_B, [0, 0])


def test_ranking_metrics_literals_at_k_boundary():
  rank_B = jnp.array([0, 1, 4, 5, 9, 10], jnp.int32)
  out = metrics.ranking_metrics(rank_B, (5, 10))
  assert sorted(out) == ["mrr@10", "mrr@5", "ndcg@10", "ndcg@5", "recall@10", "recall@5"]
  np.testing.assert_array_equal(out["recall@5"], [1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(out["recall@10"], [1, 1, 1, 1, 1, 0])
  np.testing.assert_allclose(out["ndcg@5"], [1.0, 1 / math.log2(3), 1 / math.log2(6), 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(out["ndcg@10"], [1.0, 0.63092975, 0.38685281, 0.35620718, 0.28906483, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["mrr@5"], [1.0, 0.5, 0.2, 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(out["mrr@10"], [1.0, 0.5, 0.2, 1 / 6, 0.1, 0.0], rtol=1e-6)


def test_top_k_items_worked_example():
  # user 0 allowed: 1 (0.5), 2 (0.7), 4 (0.7), 5 (0.1) -> 2, 4 (tie: lower id first), 1.
  # user 1 allowed: 2 (0.8), 4 (0.4), 5 (0.9) -> 5, 2, 4.
  ids_BxK = metrics.top_k_items(SCORES_BxN, EXCLUDE_BxN, 3)
  np.testing.assert_array_equal(ids_BxK, [[2, 4, 1], [5, 2, 4]])


def test_top_k_items_fills_with_padding_when_few_allowed():
  # user 0 allows only items 1 and 5; an allowed -inf score still beats an excluded item.
  scores_BxN = np.array([[9.0, 0.5, 0.7, 0.95, 0.7, -np.inf]], np.float32)
  exclude_BxN = np.array([[0, 0, 1, 1, 1, 0]], bool)
  np.testing.assert_array_equal(metrics.top_k_items(scores_BxN, exclude_BxN, 4), [[1, 5, 0, 0]])


_sampled_exclude = jax.jit(metrics.sampled_exclude, static_argnums=3)


def _sample_setup():
  # 12 columns; user 0 excludes items 2, 3 (target 5); user 1 excludes 7 and its own target 11.
  exclude_BxN = np.zeros((2, 12), bool)
  exclude_BxN[0, [2, 3]] = True
  exclude_BxN[1, [7, 11]] = True
  return exclude_BxN, np.array([5, 11], np.int32)


def test_sampled_exclude_leaves_target_plus_n():
  exclude_BxN, target_B = _sample_setup()
  for seed in range(5):
    out_BxN = np.asarray(_sampled_exclude(jax.random.key(seed), exclude_BxN, target_B, 3))
    candidates_BxN = ~out_BxN
    np.testing.assert_array_equal(candidates_BxN.sum(axis=1), [4, 4])
    assert candidates_BxN[0, 5] and candidates_BxN[1, 11]
    assert not candidates_BxN[:, 0].any()
    assert not (candidates_BxN & exclude_BxN & (np.arange(12) != target_B[:, None])).any()


def test_sampled_exclude_deterministic_by_key():
  exclude_BxN, target_B = _sample_setup()
  a = _sampled_exclude(jax.random.key(7), exclude_BxN, target_B, 3)
  b = metrics.sampled_exclude(jax.random.key(7), exclude_BxN, target_B, 3)
  np.testing.assert_array_equal(a, b)
  others = [_sampled_exclude(jax.random.key(s), exclude_BxN, target_B, 3) for s in range(8, 12)]
  assert any(not np.array_equal(a, o) for o in others)


def test_sampled_exclude_is_uniform():
  # user 0 has 8 allowed negatives (1, 4, 6..11); each is drawn with p = 3/8.
  exclude_BxN, target_B = _sample_setup()
  keys = jax.random.split(jax.random.key(0), 2000)
  out = jax.jit(jax.vmap(lambda k: metrics.sampled_exclude(k, exclude_BxN, target_B, 3)))(keys)
  freq_N = (~np.asarray(out))[:, 0].mean(axis=0)
  np.testing.assert_allclose(freq_N[[1, 4, 6, 7, 8, 9, 10, 11]], 3 / 8, atol=0.05)
  np.testing.assert_array_equal(freq_N[[0, 2, 3, 5]], [0, 0, 0, 1])


def test_sampled_exclude_keeps_all_when_n_too_large():
  # user 0 has 8 allowed negatives; asking for 10 keeps all 8 plus the target.
  exclude_BxN, target_B = _sample_setup()
  out_BxN = np.asarray(metrics.sampled_exclude(jax.random.key(0), exclude_BxN, target_B, 10))
  np.testing.assert_array_equal(np.flatnonzero(~out_BxN[0]), [1, 4, 5, 6, 7, 8, 9, 10, 11])


def test_sharded_jit_matches_unsharded():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (tests/conftest.py sets jax_num_cpu_devices=8)")
  rng = np.random.default_rng(0)
  scores_BxN = rng.integers(0, 4, (16, 10)).astype(np.float32)  # small ints: many ties
  target_B = rng.integers(1, 10, 16).astype(np.int32)
  exclude_BxN = rng.random((16, 10)) < 0.3

  def step(key, scores_BxN, target_B, exclude_BxN):
    rank_B = metrics.target_rank(scores_BxN, target_B, exclude_BxN)
    sampled_BxN = metrics.sampled_exclude(key, exclude_BxN, target_B, 2)
    out = metrics.ranking_metrics(rank_B, (1, 3))
    out["rank"] = rank_B
    out["sampled_rank"] = metrics.target_rank(scores_BxN, target_B, sampled_BxN)
    out["topk"] = metrics.top_k_items(scores_BxN, exclude_BxN, 3)
    return out

  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  row = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  args = (scores_BxN, target_B, exclude_BxN)
  with jax.set_mesh(mesh):
    sharded = jax.jit(step)(jax.random.key(3), *[jax.device_put(a, row) for a in args])
  plain = jax.jit(step)(jax.random.key(3), *args)
  assert sharded["rank"].sharding.spec[0] == "data"
  for name in plain:
    np.testing.assert_array_equal(sharded[name], plain[name], err_msg=name)


def test_coverage():
  topk_UxK = np.array([[1, 2], [2, 3], [0, 0]])  # {1, 2, 3} of 5 items; 0 is an empty slot
  assert metrics.coverage(topk_UxK, 5) == pytest.approx(0.6)


def test_intra_list_diversity():
  # item 1 [1,0], item 2 [0,1], item 3 [1,1], item 4 [0,0] (no features: similarity 0).
  # list [1,2,3]: distances 1, 1-1/sqrt2, 1-1/sqrt2 -> (3 - sqrt2)/3 = 0.528595
  # list [1,4,0]: one pair (1,4) -> 1.   list [2,0,0]: no pair, left out.
  feats_NxF = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
  topk_UxK = np.array([[1, 2, 3], [1, 4, 0], [2, 0, 0]])
  expected = ((3 - math.sqrt(2)) / 3 + 1.0) / 2  # 0.764298
  assert metrics.intra_list_diversity(topk_UxK, feats_NxF) == pytest.approx(expected)
  assert metrics.intra_list_diversity(topk_UxK, feats_NxF, chunk=1) == pytest.approx(0.7642977)
  assert metrics.intra_list_diversity(np.array([[3, 3]]), feats_NxF) == pytest.approx(0.0)


def test_novelty():
  # counts (item 1..3) = 3, 1, 0 over 3 users: p = 4/4, 2/4, 1/4 -> 0, 1, 2 bits.
  # user 0 [1, 2] -> 0.5; user 1 [3, empty] -> 2; mean 1.25.
  counts_N = np.array([0, 3, 1, 0])
  topk_UxK = np.array([[1, 2], [3, 0]])
  assert metrics.novelty(topk_UxK, counts_N, num_users=3) == pytest.approx(1.25)
  # Default num_users = 3 lists; the empty list is left out: (0.5 + 2) / 2.
  assert metrics.novelty(np.array([[1, 2], [3, 0], [0, 0]]), counts_N) == pytest.approx(1.25)


def test_summarize():
  out = metrics.summarize({"ndcg@10": np.array([1.0, 0.0, 0.5]), "recall@10": np.array([1, 0, 1])})
  assert out == pytest.approx({"ndcg@10": 0.5, "recall@10": 2 / 3})


def test_group_metrics_and_disparity():
  per_user = {"ndcg@10": np.array([1.0, 0.0, 0.5, 0.25, 0.6]), "recall@10": np.array([1.0, 0.0, 1.0, 1.0, 1.0])}
  groups_U = ["M", "F", "M", "F", "X"]
  out = metrics.group_metrics(per_user, groups_U)
  assert list(out["groups"]) == ["F", "M", "X"]
  assert out["groups"]["F"] == pytest.approx({"users": 2, "ndcg@10": 0.125, "recall@10": 0.5})
  assert out["groups"]["M"] == pytest.approx({"users": 2, "ndcg@10": 0.75, "recall@10": 1.0})
  assert out["groups"]["X"] == pytest.approx({"users": 1, "ndcg@10": 0.6, "recall@10": 1.0})
  assert out["disparity"]["ndcg@10"] == pytest.approx({"max_minus_min": 0.625, "worst": "F"})
  assert out["disparity"]["recall@10"] == pytest.approx({"max_minus_min": 0.5, "worst": "F"})
  import json

  assert json.loads(json.dumps(out)) == out
  with pytest.raises(ValueError, match="groups has 4"):
    metrics.group_metrics(per_user, groups_U[:4])
