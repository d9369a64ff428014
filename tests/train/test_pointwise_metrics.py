"""AUC, UAUC and logloss against hand-computed values and a brute-force pair count.

The worked AUC example: labels [1, 0, 1, 0, 1], scores [0.9, 0.9, 0.3, 0.1, 0.5]. Positives 0.9, 0.3, 0.5;
negatives 0.9, 0.1. The 6 pairs: 0.9~0.9 tie (1/2), 0.9>0.1 (1), 0.3<0.9 (0), 0.3>0.1 (1), 0.5<0.9 (0),
0.5>0.1 (1) -> 3.5 / 6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.train import metrics


def brute_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  if not len(pos) or not len(neg):
    return math.nan
  diff = pos[:, None] - neg[None, :]
  return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auc_worked_example_with_ties():
  labels = np.array([1, 0, 1, 0, 1])
  assert metrics.auc(labels, np.array([0.9, 0.9, 0.3, 0.1, 0.5])) == pytest.approx(3.5 / 6)
  assert metrics.auc(labels, np.ones(5)) == pytest.approx(0.5)  # a constant model: every pair ties
  assert metrics.auc(labels, labels.astype(float)) == 1.0
  assert metrics.auc(labels, -labels.astype(float)) == 0.0
  assert math.isnan(metrics.auc(np.ones(3), np.array([0.1, 0.2, 0.3])))  # no negative: undefined


def test_uauc_worked_example():
  # user 7: labels [1, 0, 0], scores [0.8, 0.8, 0.2] -> pairs 0.8~0.8 (1/2), 0.8>0.2 (1) -> 0.75
  # user 3: labels [0, 1, 1], scores [0.4, 0.6, 0.3] -> pairs 0.6>0.4 (1), 0.3<0.4 (0) -> 0.5
  # user 5: only positives -> not counted. UAUC = (0.75 + 0.5) / 2, over 2 users.
  users = np.array([7, 3, 7, 3, 5, 7, 3, 5])
  labels = np.array([1, 0, 0, 1, 1, 0, 1, 1])
  scores = np.array([0.8, 0.4, 0.8, 0.6, 0.7, 0.2, 0.3, 0.1])
  value, counted = metrics.uauc(users, labels, scores)
  assert counted == 2 and value == pytest.approx(0.625)
  value, counted = metrics.uauc(np.array([1, 1]), np.array([0, 0]), np.array([0.2, 0.3]))
  assert counted == 0 and math.isnan(value)


def test_auc_and_uauc_match_brute_force_pair_counts():
  rng = np.random.default_rng(0)
  for _ in range(20):
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    scores = rng.integers(0, 6, n) / 5.0  # many ties
    users = rng.integers(0, 5, n) * 11
    expected = brute_auc(labels, scores)
    got = metrics.auc(labels, scores)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)
    per_user = [brute_auc(labels[users == u], scores[users == u]) for u in np.unique(users)]
    per_user = [a for a in per_user if not math.isnan(a)]
    value, counted = metrics.uauc(users, labels, scores)
    assert counted == len(per_user)
    if per_user:
      assert value == pytest.approx(np.mean(per_user), abs=1e-12)


def test_logloss_hand_value_and_clipping():
  # -(log 0.8 + log 0.75) / 2
  assert metrics.logloss(np.array([1, 0]), np.array([0.8, 0.25])) == pytest.approx(
    -(math.log(0.8) + math.log(0.75)) / 2
  )
  assert math.isfinite(metrics.logloss(np.array([1, 0]), np.array([0.0, 1.0])))


def test_nan_scores_are_refused():
  with pytest.raises(ValueError, match="NaN"):
    metrics.auc(np.array([1, 0]), np.array([np.nan, 0.1]))
