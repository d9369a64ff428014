"""--init-from: a model trained on an older snapshot of ml-100k, updated with the newer interactions, beats both
the stale model and a cold start given the same small budget; the grown catalogue keeps every known item's row."""

import json

import numpy as np
import pytest

from fixtures_runs import genrec_cli
from genrec.config import DataConfig
from genrec.data import DataError, load_dataset
from genrec.train.warm_start import item_rows

SMALL = (
  "model.dim=32",
  "model.num_layers=1",
  "model.mlp_dim=64",
  "data.max_len=20",
  "trainer.batch_size=128",
  "trainer.eval_every=1000",
  "trainer.checkpoint_every=1000",
  "trainer.progress=false",
  "trainer.warmup_steps=10",
  "trainer.learning_rate=3e-3",
)


def _train(workdir, *flags, steps, data=()):
  code, _, err = genrec_cli(
    "train", "sasrec:ml100k", "--workdir", workdir, *flags, "--set", *SMALL, f"trainer.steps={steps}", *data
  )
  assert code == 0, err
  return json.loads((workdir / "results.json").read_text()), err


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("warm") / "old"
  _train(workdir, steps=150, data=("data.time_fraction=0.6",))
  return workdir


def test_warm_start_beats_stale_and_cold(old_run, tmp_path):
  old_items = load_dataset(DataConfig(time_fraction=0.6)).num_items
  new_items = load_dataset(DataConfig()).num_items
  assert new_items > old_items  # the newer snapshot has items the old model never saw
  stale, err = _train(tmp_path / "stale", "--init-from", old_run, steps=0)
  assert f"{old_items} items carried over, {new_items - old_items} new" in err
  warm, _ = _train(tmp_path / "warm", "--init-from", old_run, steps=30)
  cold, _ = _train(tmp_path / "cold", steps=30)
  assert warm["init_from"]["items_carried"] == old_items and "init_from" not in cold
  w, s, c = (r["test"]["ndcg@10"] for r in (warm, stale, cold))
  print(f"test NDCG@10: warm {w:.4f}, stale {s:.4f}, cold {c:.4f}")
  assert w > s and w > c


def test_incompatible_sources_are_refused(old_run, tmp_path):
  code, _, err = genrec_cli(
    "train", "sasrec:ml100k", "--workdir", tmp_path / "a", "--init-from", old_run, "--set", *SMALL, "model.dim=48"
  )
  assert code == 2 and "model config differs (dim: 32 -> 48)" in err
  code, _, err = genrec_cli(
    "train", "hstu:ml100k", "--workdir", tmp_path / "b", "--init-from", old_run, "--set", "trainer.progress=false"
  )
  assert code == 2 and "it is a 'sasrec' run; this is 'hstu'" in err
  code, _, err = genrec_cli("train", "sasrec:ml100k", "--workdir", tmp_path / "c", "--init-from", tmp_path / "nope")
  assert code == 2 and "does not exist" in err


def test_item_rows_match_by_raw_id():
  old = ["[PAD]", "a", "b", "c"]
  new = ["[PAD]", "c", "x", "a", "b"]
  # tables with one special row after the catalogue (e.g. BERT4Rec's mask token): old 5 rows, new 6
  np.testing.assert_array_equal(item_rows(old, new, 5, 6), [0, 3, -1, 1, 2, 4])
  np.testing.assert_array_equal(item_rows(old, old, 4, 4), [0, 1, 2, 3])


def test_time_fraction_snapshot():
  full, part = load_dataset(DataConfig()), load_dataset(DataConfig(time_fraction=0.5))
  total = lambda d: sum(len(s) for s in d.sequences)
  assert total(part) < 0.55 * total(full)
  assert max(t.max() for t in part.timestamps) <= np.median(np.concatenate(full.timestamps))
  with pytest.raises(DataError, match="time_fraction must be in"):
    load_dataset(DataConfig(time_fraction=0.0))
  with pytest.raises(DataError, match="not 'synthetic'"):
    load_dataset(DataConfig(dataset="synthetic", time_fraction=0.5))
