"""Amazon 2014 builder on tiny fixture files in the UCSD formats (reviews: JSON lines; meta: Python dict literals),
through TFDS into array_record and `load_dataset`; the image cache against a local HTTP server."""

from __future__ import annotations

import os
import re
import socket

import numpy as np
import pytest

from fixtures_amazon import review_lines, server, write_gz  # noqa: F401 (a fixture); tests/ is on sys.path
from genrec.cli import main as genrec_cli
from genrec.config import DataConfig
from genrec.data import amazon, load_dataset
from genrec.data.amazon import DataError, DataNotFoundError, amazon_tables
from genrec.data.image_cache import cache_folder, cache_images
from genrec.data.images import decode

# (reviewerID, asin, overall, unixReviewTime) in file order: not time-sorted, with a tie (U1 at 100).
REVIEWS = [
  ("U1", "B001", 5.0, 300),
  ("U2", "B002", 4.0, 50),
  ("U1", "B002", 3.0, 100),
  ("U3", "B004", 1.0, 10),
  ("U1", "B003", 4.0, 100),
  ("U2", "B003", 2.0, 60),
  ("U3", "B005", 5.0, 20),
  ("U2", "B001", 5.0, 40),
  ("U4", "B006", 3.0, 5),
  ("U3", "B006", 4.0, 30),
  ("U4", "B001", 4.0, 6),
  ("U1", "B006", 2.0, 50),
]
LONG = "Rich cream &amp; more. " * 40


def meta_lines(port: int) -> list[dict | str]:
  """The meta file: B003 has no line, X999 is outside the 5-core, B002 does not start with its asin."""
  img = f"http://127.0.0.1:{port}/img"
  return [
    {"asin": "X999", "title": "Not reviewed", "imUrl": f"{img}/x.png"},
    {
      "asin": "B001",
      "title": "Rose &amp; Oud  Hand Cream",
      "brand": "Aesop",
      "price": 25.0,
      "description": LONG,
      "salesRank": {"Beauty": 1203},
      "related": {"also_bought": ["B002", "X999"]},
      "categories": [["Beauty", "Skin Care", "Hands & Nails", "Hand Creams"], ["Beauty", "Fragrance"]],
      "imUrl": f"{img}/1.png",
    },
    "{'title': 'Matte Lipstick', 'asin': 'B002', 'categories': [['Beauty', 'Makeup', 'Lips', 'Lipstick']], "
    f"'imUrl': '{img}/2.png'}}",
    {"asin": "B004", "title": "Cracked Palette", "categories": [["Beauty", "Makeup"]], "imUrl": f"{img}/bad.jpg"},
    {"asin": "B005", "title": "Gone Serum", "categories": [["Beauty"]], "imUrl": f"{img}/gone.jpg"},
    {"asin": "B006", "title": "Plain Soap", "brand": "Dove", "categories": []},
    {"asin": "B001", "title": "A second B001 line is ignored"},
  ]


@pytest.fixture(scope="module")
def beauty(server, tmp_path_factory):
  """amazon-beauty prepared from the fixtures: reviews over HTTP, meta from a local path."""
  root = tmp_path_factory.mktemp("amazon")
  write_gz(server["dir"] / "reviews_Beauty_5.json.gz", review_lines(REVIEWS))
  meta = write_gz(root / "meta_Beauty.json.gz", meta_lines(server["port"]))
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(amazon.URLS, "amazon-beauty", {"reviews": f"{server['url']}/reviews_Beauty_5.json.gz", "meta": meta})
    data_dir = str(root / "tfds")
    raw = amazon_tables("amazon-beauty", data_dir)
    yield {"raw": raw, "data_dir": data_dir, "root": root}


def test_tables_keep_file_order_string_ids_and_meta_fields(beauty, server):
  raw = beauty["raw"]
  assert raw.users is None
  inter = raw.inter
  assert inter["user_id"].dtype.kind == "U" and inter["item_id"].dtype.kind == "U"
  assert inter["user_id"].tolist() == [r[0] for r in REVIEWS]
  assert inter["item_id"].tolist() == [r[1] for r in REVIEWS]
  assert inter["rating"].dtype == np.float32 and inter["rating"].tolist() == [r[2] for r in REVIEWS]
  assert inter["timestamp"].dtype == np.int64 and inter["timestamp"].tolist() == [r[3] for r in REVIEWS]
  assert server["hits"].count("/reviews_Beauty_5.json.gz") == 1  # one download serves both tables

  items = raw.items
  assert items["item_id"].tolist() == ["B001", "B002", "B004", "B003", "B005", "B006"]  # first appearance
  assert items["title"].tolist() == [
    "Rose & Oud Hand Cream",
    "Matte Lipstick",
    "Cracked Palette",
    "",
    "Gone Serum",
    "Plain Soap",
  ]
  assert list(items["genres"]) == [["Hand Creams", "Fragrance"], ["Lipstick"], ["Makeup"], [], ["Beauty"], []]
  assert items["brand"].tolist() == ["Aesop", "", "", "", "", "Dove"]
  assert items["price"].tolist() == ["25.00", "", "", "", "", ""]
  assert items["_categories"][0] == "Beauty > Skin Care > Hands & Nails > Hand Creams; Beauty > Fragrance"
  description = items["_description"][0]
  full = ("Rich cream & more. " * 40).strip()
  assert len(description) <= amazon.DESCRIPTION_CHARS and description.endswith("…")
  assert full.startswith(description[:-1]) and full[len(description) - 1] == " "  # cut at a word boundary
  assert items["_image_url"].tolist()[:2] == [f"{server['url']}/img/1.png", f"{server['url']}/img/2.png"]
  assert items["_has_meta"].tolist() == [True, True, True, False, True, True]


def test_load_dataset_builds_sequences_and_item_text(beauty):
  data = load_dataset(DataConfig(dataset="amazon-beauty", data_dir=beauty["data_dir"]))
  assert data.name == "amazon-beauty"
  # Independent reference: per user, reviews by (time, file position); users with < 3 reviews dropped.
  expected = {}
  for pos, (u, a, _, t) in sorted(enumerate(REVIEWS), key=lambda x: (x[1][3], x[0])):
    expected.setdefault(u, []).append(a)
  expected = {u: s for u, s in expected.items() if len(s) >= 3}
  got = {data.user_raw[u]: [data.item_raw[i] for i in data.sequences[u]] for u in range(data.num_users)}
  assert (
    got
    == expected
    == {"U1": ["B006", "B002", "B003", "B001"], "U2": ["B001", "B002", "B003"], "U3": ["B004", "B005", "B006"]}
  )
  assert data.stats["users_dropped_short"] == 1 and data.stats["items_without_meta"] == 1
  text = dict(zip(data.item_raw, data.item_text))
  assert text["B001"] == "Rose & Oud Hand Cream. Genres: Hand Creams, Fragrance. Brand: Aesop. Price: 25.00."
  assert text["B006"] == "Plain Soap. Brand: Dove."
  assert text["B003"] == ""  # in the reviews, not in the meta file
  assert data.item_titles[data.item_raw.index("B002")] == "Matte Lipstick"
  assert "Lipstick" in data.genre_names and data.item_genres.shape == (data.num_items + 1, len(data.genre_names))


def test_item_images_of_a_loaded_dataset(beauty, server, tmp_path):
  data = load_dataset(DataConfig(dataset="amazon-beauty", data_dir=beauty["data_dir"]))
  cached = amazon.item_images(data, beauty["data_dir"], cache_dir=tmp_path, progress=False)
  by_item = dict(zip(data.item_raw, cached.paths))
  assert len(cached.paths) == data.num_items + 1 and cached.paths[0] is None
  np.testing.assert_array_equal(decode(by_item["B001"]), server["images"]["1.png"])
  assert by_item["B003"] is None and by_item["B004"] is None and by_item["B005"] is None
  assert cached.counts == {"ok": 2, "missing": 1, "broken": 1, "failed": 0, "no_url": 3, "not_cached": 0}


@pytest.mark.parametrize(
  "which,line,expected",
  [
    ("meta", "{'asin': 'B001', 'title': 'unterminated", "not a Python dict literal"),
    ("meta", "{'asin': 'B001', 'title': open(SENTINEL, 'w').name}", "not a Python dict literal"),
    ("meta", "['B001', 'a list']", "expected a product dict with an 'asin'"),
    ("reviews", '{"reviewerID": "U9", "asin": ', "not a JSON object"),
    ("reviews", '{"reviewerID": "U9", "asin": "B001", "unixReviewTime": 1}', "missing overall"),
    ("reviews", '{"reviewerID": "U9", "asin": "B001", "overall": "five", "unixReviewTime": 1}', "must be numbers"),
  ],
  ids=[
    "meta-unterminated",
    "meta-code",
    "meta-not-a-dict",
    "reviews-not-json",
    "reviews-no-rating",
    "reviews-text-rating",
  ],
)
def test_malformed_line_names_file_and_line(tmp_path, monkeypatch, which, line, expected):
  sentinel = tmp_path / "executed"
  files = {"reviews": review_lines(REVIEWS)[:3], "meta": [{"asin": "B002", "title": "fine"}]}
  files[which].insert(1, line.replace("SENTINEL", repr(str(sentinel))))
  paths = {k: write_gz(tmp_path / amazon.file_names("amazon-toys")[k], v) for k, v in files.items()}
  monkeypatch.setitem(amazon.URLS, "amazon-toys", paths)
  with pytest.raises(DataError, match=expected) as e:
    amazon_tables("amazon-toys", str(tmp_path / "tfds"))
  assert f"{paths[which]}:2: " in str(e.value)
  assert not sentinel.exists()  # nothing in a meta line is executed


def test_truncated_or_empty_file_is_a_clear_error(tmp_path, monkeypatch):
  reviews = write_gz(tmp_path / "reviews_Toys_and_Games_5.json.gz", review_lines(REVIEWS) * 50)
  with open(reviews, "r+b") as f:
    f.truncate(os.path.getsize(reviews) // 2)
  monkeypatch.setitem(amazon.URLS, "amazon-toys", {"reviews": reviews, "meta": ""})
  with pytest.raises(DataError, match=f"{re.escape(reviews)}:[0-9]+: cannot be read as gzip-compressed UTF-8 text"):
    amazon_tables("amazon-toys", str(tmp_path / "a"))
  write_gz(reviews, ["", "  "])
  with pytest.raises(DataError, match=f"{re.escape(reviews)}: no reviews"):
    amazon_tables("amazon-toys", str(tmp_path / "b"))


def test_manual_dir_missing_files_and_names(tmp_path, monkeypatch, server):
  data_dir = tmp_path / "tfds"
  with pytest.raises(DataNotFoundError, match="Run `genrec datasets prepare amazon-sports`") as e:
    amazon_tables("amazon-sports", str(data_dir), download=False)
  assert "meta_Sports_and_Outdoors.json.gz" in str(e.value)
  manual = data_dir / "downloads" / "manual"
  manual.mkdir(parents=True)
  write_gz(manual / "reviews_Sports_and_Outdoors_5.json.gz", review_lines(REVIEWS[:2]))
  write_gz(manual / "meta_Sports_and_Outdoors.json.gz", [{"asin": "B002", "title": "Ball"}])
  monkeypatch.setitem(
    amazon.URLS, "amazon-sports", {"reviews": "http://127.0.0.1:9/never.gz", "meta": "http://127.0.0.1:9/never.gz"}
  )
  raw = amazon_tables("amazon-sports", str(data_dir))
  assert raw.items["title"].tolist() == ["", "Ball"] and raw.items["_has_meta"].tolist() == [False, True]

  monkeypatch.setitem(amazon.URLS, "amazon-toys", {"reviews": f"{server['url']}/nope.json.gz", "meta": ""})
  with pytest.raises(DataError, match="does not exist \\(HTTP 404\\); Amazon amazon-toys cannot be downloaded"):
    amazon_tables("amazon-toys", str(tmp_path / "other"))
  monkeypatch.setitem(amazon.URLS, "amazon-toys", {"reviews": _refused_url(), "meta": ""})
  with pytest.raises(
    DataError,
    match="cannot reach http://127.0.0.1:.* to download Amazon amazon-toys: .*\n"
    "On a machine without internet, download reviews_Toys_and_Games_5.json.gz",
  ):
    amazon_tables("amazon-toys", str(tmp_path / "other"))
  monkeypatch.setitem(amazon.URLS, "amazon-toys", {"reviews": str(tmp_path / "absent.gz"), "meta": ""})
  with pytest.raises(DataNotFoundError, match="absent.gz does not exist"):
    amazon_tables("amazon-toys", str(tmp_path / "other"))
  with pytest.raises(DataError, match="unknown Amazon dataset 'amazon-books'"):
    amazon_tables("amazon-books", str(data_dir))
  with pytest.raises(DataError, match="unknown Amazon dataset 'amazon-books'; choose one of amazon-beauty, "):
    load_dataset(DataConfig(dataset="amazon-books", data_dir=str(data_dir)))
  with pytest.raises(DataError, match="unknown dataset 'books'; choose one of .*'amazon-beauty', 'amazon-sports'"):
    load_dataset(DataConfig(dataset="books"))


def _refused_url() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/img/1.png"  # nothing listens there any more: connection refused


def test_image_cache_counts_skips_and_reuses(server, tmp_path):
  url = server["url"] + "/img/"
  urls = [
    url + "1.png",
    url + "2.png",
    url + "1.png",
    url + "bad.jpg",
    url + "gone.jpg",
    "",
    None,
    _refused_url(),
    url + "err500.png",
    url + "slow.png",
    url + "3.png",
  ]
  before = len(server["hits"])
  kwargs = {"cache_dir": tmp_path, "timeout": (2.0, 1.0), "retries": 1, "backoff": 0.0, "progress": False}
  first = cache_images(urls, "fixture", **kwargs)
  assert first.counts == {"ok": 4, "missing": 1, "broken": 1, "failed": 3, "no_url": 2, "not_cached": 0}
  hits = server["hits"][before:]
  assert hits.count("/img/1.png") == 1  # a repeated URL is fetched once
  assert hits.count("/img/err500.png") == 2  # a 5xx is retried once
  assert hits.count("/img/gone.jpg") == 1  # a 404 is not
  assert first.requests == len(hits) + 2  # + the two refused connections
  for k, name in ((0, "1.png"), (1, "2.png"), (2, "1.png"), (10, "3.png")):
    np.testing.assert_array_equal(decode(first.paths[k]), server["images"][name])
  assert [p is None for p in first.paths] == [False, False, False] + [True] * 7 + [False]
  assert any("bad.jpg: broken (" in e and "not a readable image" in e for e in first.errors)
  assert any("gone.jpg: missing (HTTP 404)" in e for e in first.errors)
  assert any("slow.png: failed (" in e and "Timeout" in e for e in first.errors)

  offline = cache_images(urls + [url + "new.png"], "fixture", offline=True, **kwargs)
  assert len(server["hits"]) == before + len(hits) and offline.requests == 0  # no request at all
  assert offline.paths[: len(urls)] == first.paths
  assert offline.counts == {"ok": 4, "missing": 1, "broken": 1, "failed": 0, "no_url": 2, "not_cached": 4}

  second = cache_images(urls[:7], "fixture", **kwargs)  # ok, missing and broken are all remembered
  assert second.requests == 0 and len(server["hits"]) == before + len(hits)
  assert second.paths == first.paths[:7] and second.counts["missing"] == second.counts["broken"] == 1
  files = os.listdir(cache_folder("fixture", tmp_path))
  ok = {os.path.basename(p) for p in first.paths if p}
  assert len(ok) == 3 and ok <= set(files)
  assert sorted(os.path.splitext(f)[1] for f in set(files) - ok) == [".broken", ".missing"]  # no temporary files


def test_image_cache_rejects_a_dataset_name_that_is_not_a_folder(tmp_path):
  with pytest.raises(DataError, match="dataset name '../x' cannot name a folder"):
    cache_images(["http://127.0.0.1:9/x.png"], "../x", cache_dir=tmp_path)


def test_cli_lists_and_prepares_with_images(beauty, monkeypatch, tmp_path, capsys):
  assert genrec_cli(["datasets", "list"]) == 0
  assert "genrec datasets prepare amazon-toys [--images]" in capsys.readouterr().out
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
  assert genrec_cli(["datasets", "prepare", "amazon-beauty", "--data-dir", beauty["data_dir"], "--images"]) == 0
  out = capsys.readouterr().out
  assert "item images of amazon-beauty: ok 2, missing 1, broken 1, failed 0, no_url 2, not_cached 0" in out
  assert len(list((tmp_path / "images" / "amazon-beauty").glob("*.png"))) == 2
  assert genrec_cli(["datasets", "prepare", "ml-1m", "--images"]) == 2
  assert "--images applies to the amazon-* datasets; ml-1m has no item images" in capsys.readouterr().err
