"""mmenc on Amazon 2014 item images: the image modality reads what `genrec datasets prepare amazon-beauty --images`
cached (never the network); an item whose image is missing, broken or has no URL is a counted skip with no image
modality. One fixture catalogue prepared and one mmenc:amazon-beauty run (tiny towers, 4 steps) per module."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import warnings

import numpy as np
import pytest

import genrec.configs
from fixtures_amazon import png, review_lines, server, write_gz  # noqa: F401 (a fixture); tests/ is on sys.path
from genrec import config as config_lib
from genrec import pipeline
from genrec.data import amazon, load_dataset
from genrec.data.errors import DataError
from genrec.families.content import contrastive, sources

GOOD = ("A1", "A2", "A3", "A4", "A5")  # each serves img/<asin>.png, its own random pixels
NO_IMAGE = {"A6": "gone.jpg", "A7": "bad.jpg", "A8": None}  # 404, not an image, no imUrl in the meta line
STEPS = 4


def catalogue(port: int) -> tuple[list[str], list[dict]]:
  """(review lines, meta lines): 12 users, each reviewing 6 of the 8 items in a seeded order."""
  rng = np.random.default_rng(0)
  asins = list(GOOD) + list(NO_IMAGE)
  reviews = [
    (f"U{u}", asins[k], 5.0, 1000 * u + t) for u in range(12) for t, k in enumerate(rng.permutation(len(asins))[:6])
  ]
  img = f"http://127.0.0.1:{port}/img"
  urls = {**{a: f"{img}/{a}.png" for a in GOOD}, **{a: f and f"{img}/{f}" for a, f in NO_IMAGE.items()}}
  meta = [
    {
      "asin": a,
      "title": f"Product {a}",
      "categories": [["Beauty", f"Shelf {a}"]],
      **({"imUrl": urls[a]} if urls[a] else {}),
    }
    for a in asins
  ]
  return review_lines(reviews), meta


def mmenc_config(data_dir: str):
  return config_lib.override(
    genrec.configs.get("mmenc:amazon-beauty"),
    [
      f"data.data_dir={data_dir}",
      "data.item_embeddings=random:8",
      "model.image_encoder=random:tiny",
      "model.input_dims=[8,64]",
      f"trainer.steps={STEPS}",
      "trainer.batch_size=16",
      "trainer.warmup_steps=1",
      f"trainer.eval_every={STEPS}",
      f"trainer.checkpoint_every={STEPS}",
      "trainer.log_every=1",
      "trainer.progress=false",
      "eval.batch_size=8",
    ],
  )


@pytest.fixture(scope="module")
def run(server, tmp_path_factory):
  """Prepares the catalogue with --images into a module GENREC_CACHE, then trains mmenc:amazon-beauty on it,
  recording the HTTP requests, stderr and warnings of the training alone."""
  root = tmp_path_factory.mktemp("amazon_mm")
  for k, asin in enumerate(GOOD):
    (server["dir"] / "img" / f"{asin}.png").write_bytes(png(100 + k, (40, 36, 3))[0])
  reviews, meta = catalogue(server["port"])
  files = {
    "reviews": write_gz(root / "reviews_Beauty_5.json.gz", reviews),
    "meta": write_gz(root / "meta_Beauty.json.gz", meta),
  }
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(amazon.URLS, "amazon-beauty", files)
    mp.setenv("GENREC_CACHE", str(root / "cache"))
    data_dir = str(root / "tfds")
    amazon.prepare("amazon-beauty", data_dir, images=True)
    cfg = mmenc_config(data_dir)
    hits, err = len(server["hits"]), io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      trainer = pipeline.trainer(cfg, root / "run", resume=False)
      results = trainer.run()
    yield {
      "cfg": cfg,
      "dir": root / "run",
      "results": results,
      "task": trainer.task,
      "stderr": err.getvalue(),
      "warnings": [str(w.message) for w in caught],
      "requests": server["hits"][hits:],
      "data": load_dataset(cfg.data),
    }


def image_column(task) -> tuple[np.ndarray, np.ndarray]:
  feats = task.features
  return feats.features["image"], feats.present[:, feats.modalities.index("image")]


def test_bad_images_are_counted_skips_without_image_modality(run):
  data = run["data"]
  _, present = image_column(run["task"])
  by_asin = dict(zip(data.item_raw[1:], present[1:].tolist()))
  assert sorted(by_asin) == sorted(GOOD + tuple(NO_IMAGE))
  assert {a for a, p in by_asin.items() if not p} == set(NO_IMAGE)
  assert (
    "item images of amazon-beauty: 5 of 8 items have a cached image; the others have no image modality "
    "(missing 1, broken 1, no_url 1)"
  ) in run["stderr"]
  skipped = [w for w in run["warnings"] if w.startswith("3 of 8 images skipped {'missing': 3}; first: ")]
  assert len(skipped) == 1 and skipped[0].endswith(": no image (None)"), run["warnings"]
  assert run["requests"] == []  # training read the cache only


def test_good_items_image_features_equal_an_independent_encode_of_their_files(run, server):
  data = run["data"]
  features, _ = image_column(run["task"])
  # The files the server holds (not the cache's copies), in the test's own asin order.
  expected, valid = contrastive.image_encoder("random:tiny").encode(
    [server["dir"] / "img" / f"{a}.png" for a in GOOD], progress=False
  )
  assert valid.all()
  got = features[[data.item_raw.index(a) for a in GOOD]]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(expected[:, None] - expected[None]).max(-1)[~np.eye(len(GOOD), dtype=bool)].min() > 1e-3
  assert (features[[data.item_raw.index(a) for a in NO_IMAGE]] == 0).all()


def test_training_ran_and_wrote_item_embeddings(run):
  results = run["results"]
  assert results["steps"] == STEPS and results["protocol"]["modalities"] == ["text", "image", "id"]
  logged = [json.loads(line) for line in (run["dir"] / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in logged if r["split"] == "train"]
  assert len(losses) == STEPS and np.isfinite(losses).all()
  table, meta = sources.read_item_embeddings(run["dir"])
  assert table.shape == (9, run["cfg"].model.dim) and (table[0] == 0).all()
  np.testing.assert_allclose(np.linalg.norm(table[1:], axis=1), 1.0, rtol=1e-5)
  assert meta["dataset"] == "amazon-beauty" and meta["modalities"] == ["text", "image", "id"]


def test_images_never_fetched_is_a_clear_error(run, server, tmp_path, monkeypatch):
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  hits = len(server["hits"])
  with pytest.raises(
    DataError,
    match=r"item images of amazon-beauty were never fetched \(none is in .*\): run "
    r"`genrec datasets prepare amazon-beauty --images` once .* or drop 'image' "
    r"from model.modalities",
  ):
    contrastive.item_images(run["cfg"].data)
  assert len(server["hits"]) == hits  # and nothing was downloaded


def test_an_image_not_fetched_yet_is_a_counted_skip_with_a_hint(run, tmp_path, monkeypatch, capsys):
  """An interrupted or failed fetch leaves some URLs with neither a file nor a marker: skipped, not an error."""
  folder = tmp_path / "images" / "amazon-beauty"
  shutil.copytree(run["dir"].parent / "cache" / "images" / "amazon-beauty", folder)
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  data = run["data"]
  os.remove(contrastive.item_images(run["cfg"].data)[data.item_raw.index("A3")])
  paths = contrastive.item_images(run["cfg"].data)
  assert [data.item_raw[i] for i, p in enumerate(paths) if p is None][1:] == sorted(
    set(NO_IMAGE) | {"A3"}, key=data.item_raw.index
  )
  assert (
    "4 of 8 items have a cached image; the others have no image modality (missing 1, broken 1, no_url 1, "
    "not_cached 1; run `genrec datasets prepare amazon-beauty --images` again to fetch the ones not cached)"
  ) in capsys.readouterr().err
