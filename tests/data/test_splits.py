"""eval.split=temporal: one cut by global time (genrec.data.splits), computed and labelled honestly; a task
refuses a split it does not implement."""

import dataclasses

import numpy as np
import pytest

import genrec.configs
import genrec.families  # noqa: F401  (registers the family tasks)
from fixtures_data import hand_seq_data
from genrec import config as config_lib
from genrec.config import ConfigError, EvalConfig
from genrec.data import load_dataset, splits
from genrec.data.pipeline import eval_examples
from genrec.data.types import SeqData
from genrec.errors import DataError
from genrec.train.tasks import checked_task_class, get_task


def hand_data(rows: list[list[tuple[int, int]]]) -> SeqData:
  """Per user: (item, timestamp) pairs, chronological."""
  return hand_seq_data([[i for i, _ in r] for r in rows], [[t for _, t in r] for r in rows])


# 20 interactions at times 1..20 spread over users; cuts at 0.8 -> t=17 and 0.9 -> t=19.
ROWS = [
  [(1, 1), (2, 4), (3, 8), (4, 17), (5, 18), (6, 19)],  # train 1,2,3; valid 4 (first in [17,19)); test 6
  [(2, 2), (3, 5), (1, 9), (7, 20)],  # train 2,3,1; no valid target; test 7 (no training holds 7 or 6)
  [(3, 3), (1, 6), (2, 10), (4, 11), (5, 12), (1, 13), (2, 14), (3, 15), (4, 16)],  # train only
  [(5, 17)],  # first seen in the valid window: counted, not scored
  [(6, 19)],  # first seen in the test window: counted, not scored
]


def test_the_cut_is_by_global_time_and_targets_are_the_first_in_each_window():
  data = splits.temporal(hand_data(ROWS), (0.8, 0.9))
  assert data.cuts == (17, 19)  # an interaction at exactly a cut lies after it
  assert [list(data.train_sequence(u)) for u in range(5)] == [[1, 2, 3], [2, 3, 1], [i for i, _ in ROWS[2]], [], []]
  assert list(data.eval_users("valid")) == [0] and list(data.eval_users("test")) == [0, 1]
  hist, target = data.eval_example(0, "valid")
  assert list(hist) == [1, 2, 3] and target == 4
  hist, target = data.eval_example(0, "test")
  assert list(hist) == [1, 2, 3, 4, 5] and target == 6  # the test history includes the valid window
  hist, target = data.eval_example(1, "test")
  assert list(hist) == [2, 3, 1] and target == 7
  with pytest.raises(ValueError, match="no valid target"):
    data.eval_example(1, "valid")
  stats = data.split_stats()
  assert stats["cuts"] == [17, 19] and stats["train_interactions"] == 15
  assert stats["users_without_training"] == 2
  assert stats["valid_users"] == 1 and stats["test_users"] == 2
  assert stats["valid_users_first_seen_in_window"] == 1 and stats["test_users_first_seen_in_window"] == 1
  assert stats["valid_targets_unseen_in_training"] == 0 and stats["test_targets_unseen_in_training"] == 2
  ex = eval_examples(data, "test", max_len=4)
  assert list(ex["user"]) == [0, 1] and list(ex["target"]) == [6, 7]
  assert list(ex["seen"][0][:5]) == [1, 2, 3, 4, 5]  # all_minus_seen removes the whole history


def test_leave_one_out_is_the_data_itself():
  data = hand_data(ROWS)
  assert splits.apply(data, EvalConfig()) is data
  assert list(data.eval_users("test")) == [0, 1, 2, 3, 4]


def test_bad_settings_are_refused():
  data = hand_data(ROWS)
  with pytest.raises(ConfigError, match=r"eval.split must be one of \['leave_one_out', 'temporal'\], got 'random'"):
    splits.apply(data, EvalConfig(split="random"))
  with pytest.raises(ConfigError, match="eval.temporal_cuts must be two fractions 0 < a < b < 1"):
    splits.apply(data, EvalConfig(split="temporal", temporal_cuts=(0.9, 0.8)))
  with pytest.raises(DataError, match="leaves no user with a valid target"):
    splits.temporal(hand_data([[(1, 1), (2, 2), (3, 3)], [(2, 1), (3, 2), (1, 3)]]), (0.5, 0.6))
  with pytest.raises(ConfigError, match="data.cold_items .* needs eval.split=leave_one_out"):
    splits.apply(dataclasses.replace(data, cold_items=np.asarray([7], np.int32)), EvalConfig(split="temporal"))


def test_tasks_refuse_splits_they_do_not_compute():
  mmenc = config_lib.override(genrec.configs.get("mmenc:tiny"), ["eval.split=temporal"])
  with pytest.raises(ConfigError, match="eval.split='temporal' is not implemented for model 'mmenc'.*leave_one_out"):
    checked_task_class(mmenc)
  mf = config_lib.override(genrec.configs.get("mf:tiny"), ["eval.split=leave_one_out"])
  with pytest.raises(ConfigError, match="is not implemented for model 'mf' .*\\['temporal'\\]"):
    checked_task_class(mf)
  assert genrec.configs.get("mf:ml100k").eval.split == "temporal"  # the pointwise presets say what they compute
  with pytest.raises(ConfigError, match="pointwise tasks cut at 0.8, 0.9"):
    mf = config_lib.override(genrec.configs.get("mf:tiny"), ["eval.temporal_cuts=0.7,0.9"])
    get_task(mf, load_dataset(mf.data))


@pytest.mark.parametrize("split", ["leave_one_out", "temporal"])
def test_the_printed_protocol_is_what_was_computed(split):
  cfg = config_lib.override(genrec.configs.get("sasrec:tiny"), [f"eval.split={split}"])
  data = load_dataset(cfg.data)
  task = get_task(cfg, data)
  protocol = task.protocol()
  assert protocol["split"] == split
  test_users = len(eval_examples(task.data, "test", max_len=cfg.data.max_len)["user"])
  if split == "temporal":
    assert protocol["temporal"]["test_users"] == test_users < data.num_users
    assert (
      sum(len(task.data.train_sequence(u)) for u in range(data.num_users)) == protocol["temporal"]["train_interactions"]
    )
  else:
    assert "temporal" not in protocol and test_users == data.num_users
