"""RecBole atomic files (`NAME.inter`, optional `NAME.item`, `NAME.user`) → `RawTables`.

Format: UTF-8, tab-separated; line 1 is a typed header (`user_id:token\titem_id:token\trating:float`), types
token, token_seq (space separated), float, float_seq. Columns get canonical names (`movie_title`/`title` →
"title", `release_year`/`year` → "year", `class`/`genre`/`genres` → "genres", `zip_code` → "zip"); "genres"
becomes a list of str per item, every other non-interaction column a str array. Each table also carries
"_line": the source line of each row, so later errors can point at it. Rows keep file order; blank lines are
skipped; a UTF-8 byte-order mark and CRLF line ends are accepted. Ids (`user_id`, `item_id`) must be declared
token. Timestamps stay as written: int64 when all are whole numbers, else float64 (never cut to whole numbers), and
must lie within +-2**53.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from genrec.data.errors import BadValueError, DataNotFoundError, FieldCountError, HeaderError, MissingColumnError
from genrec.data.types import RawTables

TYPES = ("token", "token_seq", "float", "float_seq")
_CANONICAL = {
  "movie_title": "title",
  "title": "title",
  "release_year": "year",
  "year": "year",
  "class": "genres",
  "genre": "genres",
  "genres": "genres",
  "zip_code": "zip",
}
_REQUIRED = {"inter": ("user_id", "item_id"), "item": ("item_id",), "user": ("user_id",)}
HOW_TO_GET = (
  "RecBole atomic datasets: https://github.com/RUCAIBox/RecSysDatasets; the ml-100k copy ships "
  "in `pip install --no-deps recbole==1.2.1`"
)


def find_recbole_dataset(name: str) -> Path | None:
  """The directory of `name` inside the installed `recbole` package (e.g. ml-100k), or None.

  Uses `find_spec`, so recbole (and torch) are never imported.
  """
  try:
    spec = importlib.util.find_spec("recbole")
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for loc in spec.submodule_search_locations:
    d = Path(loc) / "dataset_example" / name
    if (d / f"{name}.inter").is_file():
      return d
  return None


def read_atomic(directory: str | Path, name: str) -> RawTables:
  """Reads DIRECTORY/NAME.inter (required) and NAME.item, NAME.user (when present)."""
  directory = Path(directory).expanduser()
  inter_path = directory / f"{name}.inter"
  if not inter_path.is_file():
    where = f"{directory} does not exist" if not directory.is_dir() else f"looked for {inter_path}"
    raise DataNotFoundError(f"dataset '{name}': no {name}.inter found ({where}). {HOW_TO_GET}.")
  read = [inter_path]
  inter = _table(inter_path, "inter")
  tables = {}
  for kind in ("item", "user"):
    p = directory / f"{name}.{kind}"
    tables[kind] = _table(p, kind) if p.is_file() else None
    if p.is_file():
      read.append(p)
  return RawTables(
    name=name, inter=inter, items=tables["item"], users=tables["user"], source=", ".join(str(p) for p in read)
  )


def _table(path: Path, kind: str) -> dict[str, np.ndarray]:
  fields, columns, lines = _read_file(path)
  names = [n for n, _ in fields]
  out: dict[str, np.ndarray] = {"_line": lines}
  for (field, typ), col in zip(fields, columns):
    key = field if kind == "inter" else _CANONICAL.get(field, field)
    if key in out:
      key = field  # two sources of one canonical column: the first keeps the canonical name
    out[key] = _convert(path, field, typ, col, lines, key == "genres", as_text=kind != "inter")
  for req in _REQUIRED[kind]:
    if req not in out:
      raise MissingColumnError(
        f"{path} line 1: no '{req}' column (header fields: {', '.join(names)}); a .{kind} file needs "
        f"{' and '.join(r + ':token' for r in _REQUIRED[kind])}"
      )
  for req in _REQUIRED[kind]:
    typ = dict(fields).get(req)
    if typ != "token":
      raise HeaderError(
        f"{path} line 1: column '{req}' is declared {typ}, but ids are text: declare it '{req}:token' "
        "(as a float, id 1 would become '1.0' and no longer match the other files)"
      )
  if kind == "inter":
    n = len(lines)
    out["timestamp"] = (
      _timestamps(path, _required_number(path, "timestamp", out["timestamp"], lines), lines)
      if "timestamp" in out
      else np.arange(n, dtype=np.int64)
    )
    if "rating" in out:
      out["rating"] = _required_number(path, "rating", out["rating"], lines).astype(np.float32)
  return out


def _read_file(path: Path) -> tuple[list[tuple[str, str]], list[list[str]], np.ndarray]:
  """(header fields, one list of raw strings per column, source line number per row)."""
  try:
    text = path.read_text(encoding="utf-8")
  except UnicodeDecodeError as e:
    line = path.read_bytes()[: e.start].count(b"\n") + 1
    raise BadValueError(f"{path} line {line}: not valid UTF-8 ({e.reason}); atomic files are UTF-8") from None
  if "\r" in text:
    text = text.replace("\r\n", "\n")
  header, _, body_text = text.partition("\n")
  fields = _parse_header(path, header.lstrip("\ufeff"))
  body_text = body_text.rstrip("\n")
  body = body_text.split("\n") if body_text else []
  if "" in body:
    keep = [i for i, line in enumerate(body) if line]
    lines = np.asarray(keep, dtype=np.int64) + 2
    body = [body[i] for i in keep]
  else:
    lines = np.arange(2, len(body) + 2, dtype=np.int64)
  n = len(fields)
  tabs = np.fromiter((line.count("\t") for line in body), dtype=np.int64, count=len(body))
  bad = np.flatnonzero(tabs != n - 1)
  if bad.size:
    i = bad[0]
    hint = ""
    if tabs[i] == 0 and (sep := next((c for c in (",", ";", " ") if c in body[i].strip()), None)):
      hint = f"; atomic files are tab-separated, and this line looks separated by {sep!r}"
    elif i == len(body) - 1 and tabs[i] < n - 1 and not text.endswith("\n"):
      hint = "; the last line ends early: is the file truncated?"
    raise FieldCountError(
      f"{path} line {lines[i]}: expected {n} tab-separated fields ({', '.join(f for f, _ in fields)}), "
      f"found {tabs[i] + 1}: {body[i][:80]!r}{hint}"
    )
  flat = "\t".join(body).split("\t") if body else []
  columns = [flat[j::n] for j in range(n)]
  return fields, columns, lines


def _parse_header(path: Path, header: str) -> list[tuple[str, str]]:
  if not header.strip():
    raise HeaderError(
      f"{path} line 1: empty header; expected tab-separated name:type fields such as "
      "'user_id:token\\titem_id:token\\ttimestamp:float'"
    )
  parts = header.split("\t")
  if len(parts) == 1 and (sep := next((c for c in (",", ";", " ") if c in header.strip()), None)):
    raise HeaderError(
      f"{path} line 1: the header is one field, {header[:80]!r}; atomic files are tab-separated, and this one "
      f"looks separated by {sep!r}: separate its fields with tabs"
    )
  fields, seen = [], set()
  for i, f in enumerate(parts):
    name, sep, typ = f.strip().rpartition(":")
    if not sep or not name:
      raise HeaderError(
        f"{path} line 1: header field {i + 1} {f!r} is not of the form name:type (types: {', '.join(TYPES)})"
      )
    if typ not in TYPES:
      raise HeaderError(
        f"{path} line 1: header field {f!r} has unknown type '{typ}'; atomic files use {', '.join(TYPES)}"
      )
    if name in seen:
      raise HeaderError(f"{path} line 1: column '{name}' appears twice in the header")
    seen.add(name)
    fields.append((name, typ))
  return fields


def _convert(
  path: Path, field: str, typ: str, col: list[str], lines: np.ndarray, is_genres: bool, as_text: bool
) -> np.ndarray:
  """Side-table columns stay text (validated); interaction float columns become float64."""
  if typ == "float":
    values = _floats(path, field, col, lines)
    if not as_text:
      return values
  if typ == "float_seq":
    for i, v in enumerate(col):
      for piece in v.split():
        _float_or_raise(path, field, piece, lines[i])
  if typ == "token_seq" and is_genres:
    out = np.empty(len(col), dtype=object)
    out[:] = [v.split() for v in col]
    return out
  if typ == "token" and is_genres:
    out = np.empty(len(col), dtype=object)
    out[:] = [[v] if v else [] for v in col]
    return out
  return np.asarray(col, dtype=str) if col else np.zeros(0, dtype=str)


def _floats(path: Path, field: str, col: list[str], lines: np.ndarray) -> np.ndarray:
  """Float column; empty cells become NaN (required columns reject them later)."""
  try:
    return np.asarray(col, dtype=np.float64) if col else np.zeros(0)
  except ValueError:
    pass
  return np.asarray(
    [math.nan if not v.strip() else _float_or_raise(path, field, v, lines[i]) for i, v in enumerate(col)],
    dtype=np.float64,
  )


def _float_or_raise(path: Path, field: str, v: str, line) -> float:
  try:
    return float(v)
  except ValueError:
    raise BadValueError(f"{path} line {line}: column '{field}' is declared float but holds {v!r}") from None


MAX_TIMESTAMP = 2.0**53  # beyond it a float64 no longer holds every whole number


def _timestamps(path: Path, values: np.ndarray, lines: np.ndarray) -> np.ndarray:
  """int64 when every timestamp is a whole number, else float64 as read: fractional times are never cut, so
  events order by the file's values (compared as float64; equal values keep file order)."""
  bad = np.flatnonzero(np.abs(values) > MAX_TIMESTAMP)
  if bad.size:
    raise BadValueError(
      f"{path} line {lines[bad[0]]}: column 'timestamp' holds {values[bad[0]]:g}, outside the supported range "
      f"of +-2**53 ({int(MAX_TIMESTAMP)}); give times in seconds (or another unit that fits)"
    )
  if np.array_equal(values, np.floor(values)):
    return values.astype(np.int64)
  return values.astype(np.float64)


def _required_number(path: Path, field: str, values: np.ndarray, lines: np.ndarray) -> np.ndarray:
  if values.dtype.kind in "US":  # declared token: parse anyway
    values = _floats(path, field, values.tolist(), lines)
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    raise BadValueError(
      f"{path} line {lines[bad[0]]}: column '{field}' needs a number, found an empty or non-finite value"
    )
  return values
