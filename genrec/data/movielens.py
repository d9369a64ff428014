"""MovieLens 100k / 1M / 20M from GroupLens as TFDS datasets (array_record, no TensorFlow).

One builder, `genrec_movielens`, with a config per dataset and table: `ml-100k-interactions`, `ml-100k-items`,
`ml-100k-users`, the same for `ml-1m`, and `ml-20m-interactions` / `ml-20m-items` (ml-20m has no users file).
Each config has one split, "train", whose records keep the order of the source file.

- interactions: one record per chunk of `CHUNK_ROWS` consecutive ratings in file order, holding arrays
  (user_id int64, item_id int64, rating float32, timestamp int64), so ml-20m is ~300 records, not 20M.
- items: one record per movie: item_id, title (the trailing " (1995)" stripped), year ("" when the title has
  none), genres (list of names; ml-100k in the order of `u.genre`); ml-100k also has release_date.
- users: one record per user: user_id, age, gender, occupation, zip (ml-1m keeps its age and occupation codes).

The zip is fetched by TFDS' download manager from `URLS[name]` (an http(s) URL or a local path, which tests and
offline machines use), or taken from `<data_dir>/downloads/manual/<name>.zip` when that file exists. Files are
parsed straight from the zip (TFDS' extractor needs TensorFlow).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import requests
import tensorflow_datasets as tfds
from etils import epath

from genrec.data.errors import DataError, DataNotFoundError
from genrec.data.types import RawTables

NAMES = ("ml-100k", "ml-1m", "ml-20m")
URLS = {name: f"https://files.grouplens.org/datasets/movielens/{name}.zip" for name in NAMES}
TABLES = {
  "ml-100k": ("interactions", "items", "users"),
  "ml-1m": ("interactions", "items", "users"),
  "ml-20m": ("interactions", "items"),
}
CHUNK_ROWS = 65536
DEFAULT_DATA_DIR = "~/.cache/genrec/tfds"
SPLIT = "train"

_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_RATING_DTYPE = np.dtype(
  [("user_id", np.int64), ("item_id", np.int64), ("rating", np.float32), ("timestamp", np.int64)]
)


def split_title(title: str) -> tuple[str, str]:
  """ "Toy Story (1995)" -> ("Toy Story", "1995"); a title without a trailing year keeps it whole."""
  title = title.strip()
  m = _TITLE_YEAR.match(title)
  return (m.group(1), m.group(2)) if m else (title, "")


@dataclasses.dataclass(eq=False)
class MovielensConfig(tfds.core.BuilderConfig):
  dataset: str = ""
  table: str = ""


class LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo of a dataset that TFDS' GCS bucket does not hold (genrec's builders): a builder made before its
  data is prepared looks there for pre-computed info, and TFDS' lookup leaves an empty /tmp/tmp*tfds folder
  behind each time, even offline."""

  def initialize_from_bucket(self) -> None:
    pass


def _config_name(name: str, table: str) -> str:
  return f"{name}-{table}"


class GenrecMovielens(tfds.core.GeneratorBasedBuilder):
  """MovieLens ratings, movies and users, one config per (dataset, table)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  code_path = epath.Path(__file__)  # TFDS' own lookup fails for a namespace package without importlib_resources
  BUILDER_CONFIGS = [
    MovielensConfig(name=_config_name(n, t), dataset=n, table=t, description=f"MovieLens {n}, {t}")
    for n in NAMES
    for t in TABLES[n]
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    text = tfds.features.Text
    if cfg.table == "interactions":

      def col(dtype):
        return tfds.features.Tensor(shape=(None,), dtype=dtype)

      features = {
        "user_id": col(np.int64),
        "item_id": col(np.int64),
        "rating": col(np.float32),
        "timestamp": col(np.int64),
      }
    elif cfg.table == "items":
      features = {"item_id": np.int64, "title": text(), "year": text(), "genres": tfds.features.Sequence(text())}
      if cfg.dataset == "ml-100k":
        features["release_date"] = text()
    else:
      features = {"user_id": np.int64, "age": text(), "gender": text(), "occupation": text(), "zip": text()}
    return LocalDatasetInfo(
      builder=self,
      description=f"MovieLens {cfg.dataset} ({cfg.table}) from GroupLens, in source-file order.",
      features=tfds.features.FeaturesDict(features),
      homepage="https://grouplens.org/datasets/movielens/",
      citation=(
        "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
        "ACM TiiS 5, 4, Article 19."
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {SPLIT: self._generate_examples(_fetch_archive(self.builder_config.dataset, dl_manager))}

  def _generate_examples(self, archive: epath.Path) -> Iterator[tuple[int, dict[str, Any]]]:
    cfg = self.builder_config
    with zipfile.ZipFile(os.fspath(archive)) as zf:
      if cfg.table == "interactions":
        r = _read_ratings(cfg.dataset, zf)
        for k, start in enumerate(range(0, len(r), CHUNK_ROWS)):
          chunk = r[start : start + CHUNK_ROWS]
          yield k, {c: np.ascontiguousarray(chunk[c]) for c in _RATING_DTYPE.names}
      else:
        read = _read_items if cfg.table == "items" else _read_users
        yield from enumerate(read(cfg.dataset, zf))


def _fetch_archive(name: str, dl_manager: tfds.download.DownloadManager) -> epath.Path:
  manual = epath.Path(dl_manager.download_dir) / "manual" / f"{name}.zip"
  return fetch_source(URLS[name], manual, f"MovieLens {name}", "genrec.data.movielens.URLS", dl_manager)


def fetch_source(
  url: str, manual: epath.Path, what: str, setting: str, dl_manager: tfds.download.DownloadManager
) -> epath.Path:
  """`manual` when that file exists, else `url` (http(s) through the download manager, or a local path);
  `what` names the dataset and `setting` where `url` came from in error messages."""
  if manual.exists():
    return manual
  if url.startswith(("http://", "https://")):
    offline = f"On a machine without internet, download {manual.name} elsewhere and put it at {manual}"
    # TFDS retries a refused connection for minutes: fail fast when the server cannot be reached at all.
    try:
      status = requests.head(url, timeout=30, allow_redirects=True).status_code
    except requests.RequestException as e:
      raise DataError(f"cannot reach {url} to download {what}: {e}\n{offline}") from e
    if status == 404:
      raise DataError(f"{url} does not exist (HTTP 404); {what} cannot be downloaded from it")
    try:
      return epath.Path(dl_manager.download(url))
    except Exception as e:  # requests / TFDS download errors
      raise DataError(f"could not download {what} from {url}: {e}\n{offline}") from e
  local = epath.Path(url.removeprefix("file://")).expanduser()
  if not local.exists():
    raise DataNotFoundError(f"{what}: {local} does not exist (from {setting})")
  return local


def _member(zf: zipfile.ZipFile, filename: str) -> str:
  for m in zf.namelist():
    if m == filename or m.endswith("/" + filename):
      return m
  raise DataError(f"{zf.filename}: no {filename} in the archive (it has: {', '.join(zf.namelist()[:20])})")


def _lines(zf: zipfile.ZipFile, filename: str, encoding: str) -> list[str]:
  text = zf.read(_member(zf, filename)).decode(encoding)
  return [line for line in text.splitlines() if line.strip()]


def _read_ratings(name: str, zf: zipfile.ZipFile) -> np.ndarray:
  """All ratings in file order as a structured array (C-speed parsing: ml-20m has 20M lines)."""
  filename = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-20m": "ratings.csv"}[name]
  member = _member(zf, filename)
  with zf.open(member) as f:
    if name == "ml-1m":
      f = io.BytesIO(f.read().replace(b"::", b"\t"))
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
        r = np.loadtxt(
          f,
          dtype=_RATING_DTYPE,
          delimiter="," if name == "ml-20m" else "\t",
          skiprows=1 if name == "ml-20m" else 0,
          ndmin=1,
          encoding="latin-1",
        )
    except ValueError as e:
      raise DataError(f"{zf.filename}:{member}: expected user, item, rating, timestamp per line: {e}") from e
  if len(r) == 0:
    raise DataError(f"{zf.filename}:{member}: no ratings")
  return r


def _read_items(name: str, zf: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
  if name == "ml-100k":
    genres = [line.split("|")[0] for line in _lines(zf, "u.genre", "latin-1")]
    for line in _lines(zf, "u.item", "latin-1"):
      f = line.split("|")
      if len(f) != 5 + len(genres):
        raise DataError(f"u.item: expected {5 + len(genres)} fields, got {len(f)}: {line!r}")
      title, year = split_title(f[1])
      yield {
        "item_id": int(f[0]),
        "title": title,
        "year": year,
        "release_date": f[2],
        "genres": [g for g, flag in zip(genres, f[5:]) if flag.strip() == "1"],
      }
  elif name == "ml-1m":
    for line in _lines(zf, "movies.dat", "latin-1"):
      f = line.split("::")
      if len(f) != 3:
        raise DataError(f"movies.dat: expected id::title::genres, got {line!r}")
      title, year = split_title(f[1])
      yield {"item_id": int(f[0]), "title": title, "year": year, "genres": _genre_list(f[2])}
  else:
    with zf.open(_member(zf, "movies.csv")) as raw:
      rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
      next(rows, None)  # header: movieId,title,genres
      for f in rows:
        if not f:
          continue
        if len(f) != 3:
          raise DataError(f"movies.csv: expected movieId,title,genres, got {f!r}")
        title, year = split_title(f[1])
        yield {"item_id": int(f[0]), "title": title, "year": year, "genres": _genre_list(f[2])}


def _genre_list(field: str) -> list[str]:
  return [g for g in field.strip().split("|") if g and g != "(no genres listed)"]


def _read_users(name: str, zf: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
  if name == "ml-100k":
    for line in _lines(zf, "u.user", "latin-1"):
      f = line.split("|")
      if len(f) != 5:
        raise DataError(f"u.user: expected id|age|gender|occupation|zip, got {line!r}")
      yield {"user_id": int(f[0]), "age": f[1], "gender": f[2], "occupation": f[3], "zip": f[4]}
  else:
    for line in _lines(zf, "users.dat", "latin-1"):
      f = line.split("::")
      if len(f) != 5:
        raise DataError(f"users.dat: expected id::gender::age::occupation::zip, got {line!r}")
      yield {"user_id": int(f[0]), "gender": f[1], "age": f[2], "occupation": f[3], "zip": f[4]}


def _is_prepared(builder: GenrecMovielens) -> bool:
  return (builder.data_path / "dataset_info.json").exists()  # builder.is_prepared() logs a warning when not


def _resolve_dir(data_dir: str) -> str:
  return os.path.expanduser(data_dir or DEFAULT_DATA_DIR)


def _check_name(name: str) -> None:
  if name not in NAMES:
    raise DataError(f"unknown MovieLens dataset {name!r}; choose one of {', '.join(NAMES)}")


def prepare(name: str, data_dir: str = "") -> str:
  """Downloads and prepares every table of `name` (no-op when already there); prints and returns the folder."""
  _check_name(name)
  data_dir = _resolve_dir(data_dir)
  for table in TABLES[name]:
    builder = GenrecMovielens(config=_config_name(name, table), data_dir=data_dir)
    if not _is_prepared(builder):
      builder.download_and_prepare(file_format="array_record")
  root = os.path.join(data_dir, GenrecMovielens.name)
  print(f"MovieLens {name} is prepared in {root} ({', '.join(TABLES[name])})")
  return root


def movielens_tables(name: str, data_dir: str = "", download: bool = True) -> RawTables:
  """Interactions, items and users of MovieLens `name`, prepared once into `data_dir` (default ~/.cache/genrec/tfds)."""
  _check_name(name)
  data_dir = _resolve_dir(data_dir)
  builders = {t: GenrecMovielens(config=_config_name(name, t), data_dir=data_dir) for t in TABLES[name]}
  missing = [t for t, b in builders.items() if not _is_prepared(b)]
  if missing and not download:
    raise DataNotFoundError(
      f"MovieLens {name} is not prepared in {data_dir} (missing: {', '.join(missing)}). "
      f"Run `genrec datasets prepare {name}` (downloads {URLS[name]}), or pass download=True; offline, put "
      f"{name}.zip at {os.path.join(data_dir, 'downloads', 'manual', name + '.zip')} first."
    )
  if missing:
    prepare(name, data_dir)
  tables = {t: _read_table(name, t, data_dir) for t in TABLES[name]}
  return RawTables(
    name=name,
    inter=tables["interactions"],
    items=tables["items"],
    users=tables.get("users"),
    source=f"{URLS[name]} (prepared in {os.path.join(data_dir, GenrecMovielens.name)})",
  )


def _read_table(name: str, table: str, data_dir: str) -> dict[str, np.ndarray]:
  source = tfds.data_source(
    f"{GenrecMovielens.name}/{_config_name(name, table)}", split=SPLIT, data_dir=data_dir, download=False
  )
  records = _read_all(source)
  if table == "interactions":
    cols = {c: np.concatenate([r[c] for r in records]) for c in _RATING_DTYPE.names}
    return {
      "user_id": _id_strings(cols["user_id"]),
      "item_id": _id_strings(cols["item_id"]),
      "timestamp": cols["timestamp"].astype(np.int64, copy=False),
      "rating": cols["rating"].astype(np.float32, copy=False),
    }
  first = ["item_id", "title", "year", "genres"] if table == "items" else ["user_id"]
  out: dict[str, np.ndarray] = {}
  for key in first + sorted(k for k in records[0] if k not in first):
    values = [r[key] for r in records]
    if key == "genres":
      col = np.empty(len(values), dtype=object)
      col[:] = [[_text(g) for g in v] for v in values]
    elif key.endswith("_id"):
      col = _id_strings(np.asarray(values, dtype=np.int64))
    else:
      col = np.asarray([_text(v) for v in values], dtype=str)
    out[key] = col
  return out


def _id_strings(ids: np.ndarray) -> np.ndarray:
  """int ids -> the same ids as str, as narrow as they fit (astype(str) would take 21 chars each)."""
  if not len(ids):
    return ids.astype("<U1")
  lo, hi = int(ids.min()), int(ids.max())
  width = max(len(str(lo)), len(str(hi)))
  if lo >= 0 and hi <= 4 * len(ids) + 1_000_000:  # format each possible id once, then gather (20M ids: ~0.2 s)
    table, index = np.arange(hi + 1), ids
  else:
    table, index = np.unique(ids, return_inverse=True)
  table = table.astype(f"<U{width}")
  return table.view(np.dtype((np.void, table.itemsize)))[index].view(table.dtype)  # a void gather is ~8x faster


def _read_all(source, batch: int = 4096) -> list[dict[str, Any]]:
  n = len(source)
  records: list[dict[str, Any]] = []
  for start in range(0, n, batch):
    records.extend(source.__getitems__(list(range(start, min(n, start + batch)))))
  return records


def _text(v: Any) -> str:
  return v.decode("utf-8") if isinstance(v, bytes) else str(v)
