"""`genrec add-items`: new items join a trained TIGER run through its text tower and tokenizer, as an overlay."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genrec
import genrec.configs
from fixtures_runs import genrec_cli
from genrec import config as config_lib
from genrec import pipeline
from genrec.api import evaluate_run
from genrec.data.pipeline import query_example
from genrec.families.add_items import AddItemsError, read_items_csv


@pytest.fixture(scope="module")
def tiger_run(tmp_path_factory):
  """tiger:tiny on the synthetic multimodal catalogue with MiniLM text content (its captions name colour and
  pattern, aligned with the planted cycle); a private GENREC_CACHE holds its tokenizer stage."""
  mp = pytest.MonkeyPatch()
  mp.setenv("GENREC_CACHE", str(tmp_path_factory.mktemp("cache")))
  workdir = tmp_path_factory.mktemp("tiger")
  cfg = config_lib.override(
    genrec.configs.get("tiger:tiny"),
    [
      "trainer.progress=false",
      "data.dataset=synthetic_mm",
      "data.item_embeddings=text:minilm",
      "mesh.data=1",
      "trainer.steps=20",
      "trainer.eval_every=20",
      "trainer.checkpoint_every=20",
    ],
  )
  pipeline.trainer(cfg, workdir, resume=False).run()
  yield workdir
  mp.undo()


def _write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return path


@jax.jit
def _log_probs(model, batch, items_BxM):
  """(total log-probability [B, M], per digit [B, M, C]) of given items by teacher forcing."""
  enc, valid = model.encode_batch(batch)
  B, M = items_BxM.shape
  codes = jnp.take(model.item_codes[...], items_BxM.reshape(B * M), axis=0)
  log_probs = model.decode(jnp.repeat(enc, M, axis=0), jnp.repeat(valid, M, axis=0), codes)
  per_digit = jnp.take_along_axis(log_probs, codes[..., None], axis=-1)[..., 0].reshape(B, M, -1)
  return model.item_log_probs(batch, items_BxM), per_digit


def _checkpoint_digest(workdir) -> str:
  h = hashlib.sha256()
  for f in sorted(p for p in (workdir / "best").rglob("*") if p.is_file()):
    h.update(f.read_bytes())
  return h.hexdigest()


@pytest.fixture(scope="module")
def added(tiger_run, tmp_path_factory):
  """`genrec add-items` of "twin" (the text of user 3's top item) and "decoy" (that of the item ranked 20th)."""
  run = genrec.load(tiger_run)
  data = run.dataset()
  user = 3
  recs = run.recommend(data.user_raw[user], k=20)
  top, low = (data.item_raw.index(recs[i]["item"]) for i in (0, -1))
  before = {"codes": np.asarray(run.model.item_codes[...]), "digest": _checkpoint_digest(tiger_run)}
  items = _write_csv(
    tmp_path_factory.mktemp("csv") / "items.csv",
    ["item_id", "text", "title"],
    [["twin", data.item_text[top], "Twin"], ["decoy", data.item_text[low], "Decoy"]],
  )
  code, out, err = genrec_cli("add-items", tiger_run, items, "--json")
  assert code == 0, err
  return {
    "summary": json.loads(out),
    "data": data,
    "user": user,
    "top": top,
    "K": run.config.model.codebook_size,
    **before,
  }


def test_added_items_get_codes_and_are_recommended(tiger_run, added):
  data, user, top, codes = added["data"], added["user"], added["top"], added["codes"]
  n, summary = data.num_items, added["summary"]
  assert summary["revision"] == 1 and [a["id"] for a in summary["added"]] == [n + 1, n + 2]
  twin_codes, decoy_codes = (np.asarray(a["codes"]) for a in summary["added"])
  np.testing.assert_array_equal(twin_codes[:-1], codes[top, :-1])  # the tokenizer's prefix of its twin
  same_prefix = codes[(codes[:, :-1] == twin_codes[:-1]).all(1), -1]
  assert twin_codes[-1] == min(set(range(added["K"])) - set(same_prefix.tolist()))  # a fresh collision digit

  grown = genrec.load(tiger_run)
  assert grown.config.model.num_items == n + 2 and [a["item"] for a in grown.added] == ["twin", "decoy"]
  table = np.asarray(grown.model.item_codes[...])
  np.testing.assert_array_equal(table[: n + 1], codes)
  np.testing.assert_array_equal(table[n + 1 :], [twin_codes, decoy_codes])
  # New items are ranked by their prefix (TIGER's cold-start rule, at most floor(0.1 k) of a top k): the twin
  # shares its source's prefix, the user's best, so it enters the top 10 at once, next to its source (above it:
  # a prefix's score lacks the last digit's log-probability, which is < 0).
  assert not np.asarray(grown.model.trained[...])[n + 1 :].any()
  recs = grown.recommend(data.user_raw[user], k=10)
  assert [r["item"] for r in recs[:2]] == ["twin", data.item_raw[top]] and recs[0]["title"] == "Twin"
  assert "decoy" not in {r["item"] for r in recs}  # one slot in a top 10
  batch = query_example(data, user, max_len=grown.config.data.max_len)
  items = np.array([[top, n + 1, n + 2]])
  total, levels = (np.asarray(x)[0] for x in _log_probs(grown.model, batch, items))
  # Content decides the prefix: the twin's digits before the collision digit score exactly as its source
  # item's, and above the decoy's (whose text is that of an item the model ranks 20th).
  np.testing.assert_allclose(levels[1, :-1], levels[0, :-1], rtol=1e-5)
  np.testing.assert_allclose([recs[0]["score"], recs[1]["score"]], [levels[1, :-1].sum(), total[0]], rtol=1e-4)
  assert levels[1, :-1].sum() > levels[2, :-1].sum()
  unseen = n + 2 - len(set(data.sequences[user].tolist()))
  assert "decoy" in {r["item"] for r in grown.recommend(data.user_raw[user], k=unseen)}  # 0.1 k slots
  assert _checkpoint_digest(tiger_run) == added["digest"]  # the checkpoint is untouched

  code, out, err = genrec_cli("recommend", tiger_run, "--user", data.user_raw[user], "--k", "10", "--json")
  assert code == 0 and "twin" in {r["item"] for r in json.loads(out)}
  with pytest.raises(ValueError, match="added items"):
    evaluate_run(grown, write=False)
  assert genrec.load(tiger_run, added_items=False).config.model.num_items == n


def test_overlay_versions_and_repeated_ids(tiger_run, added, tmp_path):
  copy = shutil.copytree(tiger_run, tmp_path / "run")
  items = _write_csv(tmp_path / "more.csv", ["item_id", "title", "genres"], [["more", "Blue stripes", "genre_a"]])
  code, out, err = genrec_cli("add-items", copy, items)
  assert code == 0, err
  overlay = copy / "artifacts" / "added_items.json"
  record = json.loads(overlay.read_text())
  meta = record["meta"]
  assert meta["revision"] == 2 and meta["kind"] == "codes" and record["arrays"]["codes"]["shape"][0] == 3
  assert meta["items"][2]["text"] == "Blue stripes. Genres: genre_a."
  assert [p.name for p in (copy / "artifacts").glob("added_items.*.npy")] == [record["arrays"]["codes"]["file"]]
  assert [a["item"] for a in genrec.load(copy).added] == ["twin", "decoy", "more"]
  code, _, err = genrec_cli("add-items", copy, items)
  assert code == 2 and "'more'" in err and "earlier add-items" in err
  with pytest.MonkeyPatch.context() as mp:  # the tokenizer stage is elsewhere
    mp.setenv("GENREC_CACHE", str(tmp_path / "empty"))
    code, _, err = genrec_cli("add-items", copy, _write_csv(tmp_path / "x.csv", ["item_id", "title"], [["x", "y"]]))
  assert code == 2 and "the tokenizer stage rqkmeans:tiny of" in err and "is not in" in err
  overlay.write_text(json.dumps({**record, "meta": {**meta, "base": {**meta["base"], "num_items": 7}}}))
  with pytest.raises(AddItemsError, match="was made for .* not for this run"):
    genrec.load(copy)
  overlay.write_text(json.dumps(record))
  np.save(copy / "artifacts" / record["arrays"]["codes"]["file"], np.zeros((3, 3), np.int32), allow_pickle=False)
  with pytest.raises(AddItemsError, match="is damaged"):
    genrec.load(copy)


def test_bad_item_files(tiger_run, tmp_path):
  taken = {"i5": "the catalogue"}
  cases = [
    (["item_id", "title"], [["i5", "x"]], "already in the catalogue"),
    (["item_id", "title"], [["a", "x"], ["a", "y"]], "appears twice .* \\(lines 2 and 3\\)"),
    (["item_id", "genres"], [["a", "genre_a"]], "no 'title' or 'text' column"),
    (["id", "title"], [["a", "x"]], "no 'item_id' column"),
    (["item_id", "title", "image"], [["a", "x", "nope.png"]], "line 2: image 'nope.png' of item 'a' does not exist"),
    (["item_id", "title"], [], "no items"),
    (["item_id", "title"], [["a", ""]], "line 2: item 'a' has no title or text"),
  ]
  for i, (header, rows, message) in enumerate(cases):
    with pytest.raises(AddItemsError, match=message):
      read_items_csv(_write_csv(tmp_path / f"bad{i}.csv", header, rows), taken)
  with pytest.raises(AddItemsError, match="no such file"):
    read_items_csv(tmp_path / "missing.csv", taken)
  good = _write_csv(tmp_path / "good.csv", ["item_id", "title", "image"], [["a", "x", "pic.png"]])
  (tmp_path / "pic.png").write_bytes(b"not decoded here")
  assert read_items_csv(good, taken)[0].image == tmp_path / "pic.png"
  code, _, err = genrec_cli("add-items", tiger_run, tmp_path / "bad0.csv")
  assert code == 2 and "already in the catalogue" in err


def test_multimodal_content_from_image_files(tmp_path):
  """Through an mmenc run (image + genre + ID on synthetic_mm): a new item given item 5's image as a PNG file and
  its genre gets the fused vector the trained encoder gives item 5 without its ID; an undecodable image is
  skipped and counted (item 6's genre alone)."""
  from PIL import Image

  from genrec.data.synthetic_mm import item_images
  from genrec.families.add_items import NewItem, content_vectors
  from genrec.families.content.contrastive import item_features

  cfg = config_lib.override(
    genrec.configs.get("mmenc:tiny"),
    ["trainer.progress=false", "mesh.data=1", "trainer.steps=2", "trainer.eval_every=2", "trainer.checkpoint_every=2"],
  )
  pipeline.trainer(cfg, tmp_path / "mm", resume=False).run()
  Image.fromarray(item_images(cfg.data)[5]).save(tmp_path / "five.png")
  (tmp_path / "bad.png").write_bytes(b"not an image")
  enc = genrec.load(tmp_path / "mm")
  data = enc.dataset()
  genres = lambda i: tuple(data.genre_names[g] for g in np.flatnonzero(data.item_genres[i]))  # noqa: E731
  items = [
    NewItem("a", "a", "a", genres(5), tmp_path / "five.png", 2),
    NewItem("b", "b", "b", genres(6), tmp_path / "bad.png", 3),
  ]
  data_cfg = config_lib.override(cfg, [f"data.item_embeddings=run:{tmp_path / 'mm'}"]).data
  with pytest.warns(UserWarning, match="1 of 2 images skipped"):
    vectors, counts = content_vectors(data_cfg, items)
  assert counts == {"images_skipped": 1}
  rows = item_features(data, enc.config).rows(np.array([5, 6]))
  rows["present"][:, list(enc.config.model.modalities).index("id")] = False
  rows["present"][1, list(enc.config.model.modalities).index("image")] = False
  reference = jax.jit(lambda m, b: m.encode(b))(enc.model, rows)
  np.testing.assert_allclose(vectors, np.asarray(reference), atol=1e-5)
