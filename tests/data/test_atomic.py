from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from genrec.data import errors
from genrec.data.atomic import find_recbole_dataset, read_atomic


def write(d, name, text):
  (d / name).write_text(text, encoding="utf-8")


def test_typed_headers_become_canonical_columns(tmp_path):
  write(
    tmp_path,
    "toy.inter",
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t4\t100.0\nu1\ti2\t3.5\t101\n",
  )
  write(
    tmp_path,
    "toy.item",
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "i1\tToy Story\t1995\tAnimation Comedy\ni2\tHeat\t1995\t\n",
  )
  write(tmp_path, "toy.user", "user_id:token\tage:token\tgender:token\tzip_code:token\n\nu1\t24\tM\t85711\n")
  raw = read_atomic(tmp_path, "toy")
  assert raw.name == "toy" and "toy.inter" in raw.source and "toy.user" in raw.source
  assert raw.inter["user_id"].tolist() == ["u1", "u1"]
  assert raw.inter["timestamp"].dtype == np.int64 and raw.inter["timestamp"].tolist() == [100, 101]
  assert raw.inter["rating"].dtype == np.float32 and raw.inter["rating"].tolist() == [4.0, 3.5]
  assert raw.items["title"].tolist() == ["Toy Story", "Heat"]
  assert raw.items["year"].tolist() == ["1995", "1995"]
  assert list(raw.items["genres"]) == [["Animation", "Comedy"], []]
  assert raw.users["zip"].tolist() == ["85711"] and raw.users["age"].tolist() == ["24"]
  assert raw.users["_line"].tolist() == [3]  # the blank line 2 is skipped, line numbers stay true


def test_optional_tables_and_timestamp(tmp_path):
  write(tmp_path, "t.inter", "user_id:token\titem_id:token\tembedding:float_seq\r\nu\ta\t0.5 1\r\nu\tb\t2\r\n")
  raw = read_atomic(tmp_path, "t")
  assert raw.items is None and raw.users is None
  assert raw.inter["timestamp"].tolist() == [0, 1]  # file order stands in for time
  assert raw.inter["item_id"].tolist() == ["a", "b"]


def test_missing_file_says_where_and_how(tmp_path):
  with pytest.raises(errors.DataNotFoundError, match="recbole") as e:
    read_atomic(tmp_path, "nope")
  assert str(tmp_path / "nope.inter") in str(e.value)


@pytest.mark.parametrize(
  "header, match",
  [
    ("user_id\titem_id:token", "header field 1 'user_id' is not of the form name:type"),
    ("user_id:token\titem_id:int", "unknown type 'int'"),
    ("user_id:token\tuser_id:token", "appears twice"),
  ],
)
def test_bad_header(tmp_path, header, match):
  write(tmp_path, "b.inter", header + "\n1\t2\n")
  with pytest.raises(errors.HeaderError, match=match) as e:
    read_atomic(tmp_path, "b")
  assert "b.inter line 1" in str(e.value)


def test_missing_required_column(tmp_path):
  write(tmp_path, "m.inter", "user_id:token\tmovie:token\n1\t2\n")
  with pytest.raises(errors.MissingColumnError, match=r"m.inter line 1: no 'item_id' column.*movie"):
    read_atomic(tmp_path, "m")


def test_non_numeric_float(tmp_path):
  write(tmp_path, "f.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\tfive\n")
  with pytest.raises(errors.BadValueError, match=r"f.inter line 3: column 'rating' is declared float but holds 'five'"):
    read_atomic(tmp_path, "f")


def test_empty_timestamp(tmp_path):
  write(tmp_path, "e.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t\n")
  with pytest.raises(errors.BadValueError, match=r"e.inter line 2: column 'timestamp' needs a number"):
    read_atomic(tmp_path, "e")


def test_wrong_field_count(tmp_path):
  write(tmp_path, "w.inter", "user_id:token\titem_id:token\n1\t2\n1\t2\t3\n")
  with pytest.raises(errors.FieldCountError, match=r"w.inter line 3: expected 2 tab-separated fields .* found 3"):
    read_atomic(tmp_path, "w")


def test_errors_are_value_errors():
  assert issubclass(errors.FieldCountError, errors.DataError) and issubclass(errors.DataError, ValueError)


def test_find_recbole_dataset():
  assert find_recbole_dataset("no-such-dataset") is None
  if importlib.util.find_spec("recbole") is None:
    pytest.skip("recbole not installed (pip install --no-deps recbole==1.2.1)")
  d = find_recbole_dataset("ml-100k")
  assert d is not None and (d / "ml-100k.inter").is_file()
