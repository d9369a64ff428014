"""Amazon 2014 5-core reviews with item metadata (McAuley et al., UCSD) as TFDS datasets (array_record, no TF).

One builder, `genrec_amazon`, with a config per category and table: `amazon-beauty-interactions` and
`amazon-beauty-items`, the same for `amazon-sports` (Sports_and_Outdoors) and `amazon-toys` (Toys_and_Games).
Sources per category: `reviews_<Cat>_5.json.gz` (one JSON object per line) and `meta_<Cat>.json.gz` (one Python
dict literal per line, read with `ast.literal_eval`: nothing in the file is ever executed). Each config has one
split, "train", in source-file order.

- interactions: one record per chunk of `CHUNK_ROWS` consecutive reviews: user_id and item_id (string arrays:
  reviewerID, asin), rating float32 (overall), timestamp int64 (unixReviewTime).
- items: one record per item of the reviews file, in order of first appearance there: item_id (asin), title,
  brand, price (text), description (cut to `DESCRIPTION_CHARS`), categories (each path "A > B > C"),
  leaf_categories, image_url, has_meta (False for an item the meta file lacks: its fields stay empty). Meta lines
  of items outside the 5-core are skipped unparsed.

Files come from `URLS[name]` ({"reviews": ..., "meta": ...}, each an http(s) URL or a local path, which tests
and offline machines use) through TFDS' download manager, or from `<data_dir>/downloads/manual/<file name>`.
`amazon_tables` gives `RawTables` whose items carry title, genres (the leaf categories), brand and price, which
preprocessing assembles into item_text; description, categories, image_url and has_meta ride along under names
starting with "_", which preprocessing leaves out of item_text.
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import html
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from genrec.data.errors import DataError, DataNotFoundError
from genrec.data.movielens import SPLIT, LocalDatasetInfo, _is_prepared, _read_all, _resolve_dir, _text, fetch_source
from genrec.data.types import RawTables, SeqData

NAMES = ("amazon-beauty", "amazon-sports", "amazon-toys")
CATEGORIES = {"amazon-beauty": "Beauty", "amazon-sports": "Sports_and_Outdoors", "amazon-toys": "Toys_and_Games"}
BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
TABLES = ("interactions", "items")
CHUNK_ROWS = 65536
DESCRIPTION_CHARS = 500

_ASIN_FIRST = re.compile(r"\{'asin': '([^'\\]*)'")  # how every line of the UCSD meta files starts
_REVIEW_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
_CHUNK_DTYPES = {"user_id": np.object_, "item_id": np.object_, "rating": np.float32, "timestamp": np.int64}


def file_names(name: str) -> dict[str, str]:
  """{"reviews": "reviews_<Cat>_5.json.gz", "meta": "meta_<Cat>.json.gz"} for dataset `name`."""
  cat = CATEGORIES[name]
  return {"reviews": f"reviews_{cat}_5.json.gz", "meta": f"meta_{cat}.json.gz"}


URLS = {n: {kind: BASE_URL + f for kind, f in file_names(n).items()} for n in NAMES}


@dataclasses.dataclass(eq=False)
class AmazonConfig(tfds.core.BuilderConfig):
  dataset: str = ""
  table: str = ""


class GenrecAmazon(tfds.core.GeneratorBasedBuilder):
  """Amazon 2014 5-core reviews and their items' metadata, one config per (category, table)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  code_path = epath.Path(__file__)  # TFDS' own lookup fails for a namespace package without importlib_resources
  BUILDER_CONFIGS = [
    AmazonConfig(name=f"{n}-{t}", dataset=n, table=t, description=f"Amazon 2014 {CATEGORIES[n]} 5-core, {t}")
    for n in NAMES
    for t in TABLES
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    text, texts = tfds.features.Text(), tfds.features.Sequence(tfds.features.Text())
    if cfg.table == "interactions":
      features = {c: tfds.features.Tensor(shape=(None,), dtype=d) for c, d in _CHUNK_DTYPES.items()}
    else:
      features = {
        "item_id": text,
        "title": text,
        "brand": text,
        "price": text,
        "description": text,
        "categories": texts,
        "leaf_categories": texts,
        "image_url": text,
        "has_meta": np.bool_,
      }
    return LocalDatasetInfo(
      builder=self,
      description=f"Amazon 2014 {CATEGORIES[cfg.dataset]} 5-core ({cfg.table}) from UCSD, in source-file order.",
      features=tfds.features.FeaturesDict(features),
      homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
      citation=(
        "R. He and J. McAuley. 2016. Ups and downs: Modeling the visual evolution of fashion trends with "
        "one-class collaborative filtering. WWW. J. McAuley et al. 2015. Image-based recommendations "
        "on styles and substitutes. SIGIR."
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    cfg = self.builder_config
    kinds = ("reviews",) if cfg.table == "interactions" else ("reviews", "meta")
    return {SPLIT: self._generate_examples({k: _fetch(cfg.dataset, k, dl_manager) for k in kinds})}

  def _generate_examples(self, files: dict[str, epath.Path]) -> Iterator[tuple[int, dict[str, Any]]]:
    reviews = read_reviews(files["reviews"])
    if self.builder_config.table == "interactions":
      for k, start in enumerate(range(0, len(reviews["user_id"]), CHUNK_ROWS)):
        yield k, {c: v[start : start + CHUNK_ROWS] for c, v in reviews.items()}
      return
    asins = list(dict.fromkeys(reviews["item_id"].tolist()))
    meta = read_meta(files["meta"], set(asins))
    if len(meta) < len(asins):
      print(
        f"{len(asins) - len(meta)} of the {len(asins)} items in {os.fspath(files['reviews'])} have no line in "
        f"{os.fspath(files['meta'])}: they keep empty text"
      )
    for k, asin in enumerate(asins):
      yield k, item_record(asin, meta.get(asin))


def _fetch(name: str, kind: str, dl_manager: tfds.download.DownloadManager) -> epath.Path:
  manual = epath.Path(dl_manager.download_dir) / "manual" / file_names(name)[kind]
  return fetch_source(URLS[name][kind], manual, f"Amazon {name}", f"genrec.data.amazon.URLS[{name!r}]", dl_manager)


def _lines(path) -> Iterator[tuple[int, str]]:
  """(line number, line) of every non-blank line of a gzip-compressed (or plain) UTF-8 text file."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    compressed = f.read(2) == b"\x1f\x8b"
  k = 0
  try:
    with gzip.open(path, "rt", encoding="utf-8") if compressed else open(path, encoding="utf-8") as f:
      for k, line in enumerate(f, start=1):
        if line.strip():
          yield k, line
  except (OSError, EOFError, UnicodeDecodeError) as e:  # gzip.BadGzipFile is an OSError
    raise DataError(
      f"{path}:{k + 1}: cannot be read as {'gzip-compressed ' if compressed else ''}UTF-8 text ({e})"
    ) from None


def _clip(line: str, n: int = 120) -> str:
  line = line.strip()
  return repr(line if len(line) <= n else line[:n] + "…")


def read_reviews(path) -> dict[str, np.ndarray]:
  """user_id, item_id (object arrays of str), rating float32, timestamp int64 of every review, in file order."""
  users, items, ratings, times = [], [], [], []
  for k, line in _lines(path):
    where = f"{os.fspath(path)}:{k}"
    try:
      review = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: not a JSON object ({e.msg}): {_clip(line)}") from None
    missing = [key for key in _REVIEW_KEYS if key not in review] if isinstance(review, dict) else _REVIEW_KEYS
    if missing:
      raise DataError(f"{where}: a review needs {', '.join(_REVIEW_KEYS)}; missing {', '.join(missing)}: {_clip(line)}")
    try:
      rating, time = float(review["overall"]), int(review["unixReviewTime"])
    except (TypeError, ValueError):
      raise DataError(
        f"{where}: overall={review['overall']!r} and unixReviewTime={review['unixReviewTime']!r} must be numbers"
      ) from None
    users.append(str(review["reviewerID"]))
    items.append(str(review["asin"]))
    ratings.append(rating)
    times.append(time)
  if not users:
    raise DataError(f"{os.fspath(path)}: no reviews")
  return {
    "user_id": np.asarray(users, dtype=object),
    "item_id": np.asarray(items, dtype=object),
    "rating": np.asarray(ratings, np.float32),
    "timestamp": np.asarray(times, np.int64),
  }


def read_meta(path, wanted: set[str]) -> dict[str, dict]:
  """asin -> product dict for the asins in `wanted` (the first line of each); other lines are skipped unparsed."""
  found: dict[str, dict] = {}
  for k, line in _lines(path):
    m = _ASIN_FIRST.match(line)
    if m and (m.group(1) not in wanted or m.group(1) in found):
      continue
    try:
      product = ast.literal_eval(line.strip())
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
      raise DataError(
        f"{os.fspath(path)}:{k}: not a Python dict literal ({type(e).__name__}: {e}); the meta file "
        f"holds one product dict per line: {_clip(line)}"
      ) from None
    if not isinstance(product, dict) or not isinstance(product.get("asin"), str):
      raise DataError(f"{os.fspath(path)}:{k}: expected a product dict with an 'asin': {_clip(line)}")
    if product["asin"] in wanted and product["asin"] not in found:
      found[product["asin"]] = product
  return found


def _clean(v: Any) -> str:
  return " ".join(html.unescape(str(v)).split()) if v is not None else ""


def _truncate(text: str, n: int) -> str:
  """At most n characters, cut at a word boundary with "…" when it had to be cut."""
  if len(text) <= n:
    return text
  cut = text[: n - 1]
  return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def item_record(asin: str, meta: dict | None) -> dict[str, Any]:
  """The items-table record of one asin from its meta dict (None: not in the meta file)."""
  meta = meta or {}
  paths = meta.get("categories")
  paths = (
    [[_clean(c) for c in p if _clean(c)] for p in paths if isinstance(p, (list, tuple))]
    if isinstance(paths, (list, tuple))
    else []
  )
  paths = [p for p in paths if p]
  price = meta.get("price")
  return {
    "item_id": asin,
    "title": _clean(meta.get("title")),
    "brand": _clean(meta.get("brand")),
    "price": f"{price:.2f}" if isinstance(price, (int, float)) else _clean(price),
    "description": _truncate(_clean(meta.get("description")), DESCRIPTION_CHARS),
    "categories": [" > ".join(p) for p in paths],
    "leaf_categories": list(dict.fromkeys(p[-1] for p in paths)),
    "image_url": _clean(meta.get("imUrl")),
    "has_meta": bool(meta),
  }


def _check_name(name: str) -> None:
  if name not in NAMES:
    raise DataError(f"unknown Amazon dataset {name!r}; choose one of {', '.join(NAMES)}")


def prepare(name: str, data_dir: str = "", *, images: bool = False) -> str:
  """Downloads and prepares both tables of `name` (no-op when already there); prints and returns the folder.
  `images=True` also fetches every item image into the image cache (`genrec.data.image_cache`)."""
  _check_name(name)
  data_dir = _resolve_dir(data_dir)
  for table in TABLES:
    builder = GenrecAmazon(config=f"{name}-{table}", data_dir=data_dir)
    if not _is_prepared(builder):
      builder.download_and_prepare(file_format="array_record")
  root = os.path.join(data_dir, GenrecAmazon.name)
  print(f"Amazon {name} is prepared in {root} ({', '.join(TABLES)})")
  if images:
    from genrec.data.image_cache import cache_images

    cached = cache_images(_read_table(name, "items", data_dir)["_image_url"].tolist(), name)
    print(f"item images of {name}: " + ", ".join(f"{k} {v}" for k, v in cached.counts.items()))
  return root


def amazon_tables(name: str, data_dir: str = "", download: bool = True) -> RawTables:
  """Reviews and items of Amazon `name`, prepared once into `data_dir` (default ~/.cache/genrec/tfds)."""
  _check_name(name)
  data_dir = _resolve_dir(data_dir)
  missing = [t for t in TABLES if not _is_prepared(GenrecAmazon(config=f"{name}-{t}", data_dir=data_dir))]
  if missing and not download:
    files = " and ".join(os.path.join(data_dir, "downloads", "manual", f) for f in file_names(name).values())
    raise DataNotFoundError(
      f"Amazon {name} is not prepared in {data_dir} (missing: {', '.join(missing)}). Run `genrec datasets "
      f"prepare {name}` (downloads from {BASE_URL}), or pass download=True; offline, put {files} there first."
    )
  if missing:
    prepare(name, data_dir)
  return RawTables(
    name=name,
    inter=_read_table(name, "interactions", data_dir),
    items=_read_table(name, "items", data_dir),
    users=None,
    source=f"{URLS[name]['reviews']}, {URLS[name]['meta']} (prepared in {os.path.join(data_dir, GenrecAmazon.name)})",
  )


def _read_table(name: str, table: str, data_dir: str) -> dict[str, np.ndarray]:
  source = tfds.data_source(f"{GenrecAmazon.name}/{name}-{table}", split=SPLIT, data_dir=data_dir, download=False)
  records = _read_all(source)
  if table == "interactions":

    def ids(c):
      return np.char.decode(np.concatenate([r[c] for r in records]).astype(bytes), "utf-8")

    return {
      "user_id": ids("user_id"),
      "item_id": ids("item_id"),
      "timestamp": np.concatenate([r["timestamp"] for r in records]).astype(np.int64, copy=False),
      "rating": np.concatenate([r["rating"] for r in records]).astype(np.float32, copy=False),
    }

  def text(key):
    return np.asarray([_text(r[key]) for r in records], dtype=str)

  genres = np.empty(len(records), dtype=object)
  genres[:] = [[_text(g) for g in r["leaf_categories"]] for r in records]
  return {
    "item_id": text("item_id"),
    "title": text("title"),
    "genres": genres,
    "brand": text("brand"),
    "price": text("price"),
    "_description": text("description"),
    "_categories": np.asarray(["; ".join(_text(c) for c in r["categories"]) for r in records], dtype=str),
    "_image_url": text("image_url"),
    "_has_meta": np.asarray([bool(r["has_meta"]) for r in records]),
  }


def with_meta_stats(data: SeqData, raw: RawTables) -> SeqData:
  """`data` with stats["items_without_meta"]: its items that the meta file lacks (their item_text is empty)."""
  lacking = set(raw.items["item_id"][~raw.items["_has_meta"]].tolist())
  count = sum(r in lacking for r in data.item_raw[1:])
  return dataclasses.replace(data, stats={**data.stats, "items_without_meta": count})


def item_image_urls(data: SeqData, raw: RawTables) -> list[str]:
  """Image URL of each item id of `data` ("" where the meta file has none; [0] == "" for padding)."""
  url = dict(zip(raw.items["item_id"].tolist(), raw.items["_image_url"].tolist()))
  return [""] + [url.get(r, "") for r in data.item_raw[1:]]


def item_images(data: SeqData, data_dir: str = "", **kwargs):
  """The cached image of each item id of a loaded Amazon dataset (`CachedImages`: paths[i] for item i, None
  where there is none), downloaded once; `kwargs` go to `genrec.data.image_cache.cache_images` (offline=True:
  the cache only)."""
  from genrec.data.image_cache import cache_images

  raw = amazon_tables(data.name, data_dir, download=False)
  return cache_images(item_image_urls(data, raw), data.name, **kwargs)
