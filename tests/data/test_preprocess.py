from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from genrec.config import DataConfig
from genrec.data import DataError, errors, load_dataset
from genrec.data.atomic import read_atomic
from genrec.data.preprocess import age_bucket, prepare

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
a\ti3\t5\t30
a\ti1\t5\t10
b\ti2\t4\t5
a\ti2\t5\t20
a\ti4\t5\t20
b\ti1\t4\t5
b\ti3\t1\t7
c\ti1\t5\t1
c\ti2\t5\t2
b\ti4\t2\t9
"""
ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
i4\tHeat\t1995\tAction Crime
i3\tunkonwn\tunkonwn\tunknown
i2\tSome Film (1995)\tV\tDrama
i1\tToy Story\t1995\tAnimation Comedy
i5\tNever Watched\t2000\tDrama
"""
USER = """user_id:token\tage:token\tgender:token\toccupation:token
b\t53\tF\tnone
a\t24\tM\t
c\t7\tM\tstudent
"""


def toy(tmp_path, inter=INTER, item=ITEM, user=USER, name="toy"):
  for ext, text in (("inter", inter), ("item", item), ("user", user)):
    if text is not None:
      (tmp_path / f"{name}.{ext}").write_text(text)
  return read_atomic(tmp_path, name)


def test_sequences_are_chronological_with_file_order_ties(tmp_path):
  data = prepare(toy(tmp_path), DataConfig())
  # Ids follow the item and user tables; i5 has no interactions and c too few, so both are gone.
  assert data.item_raw == ["[PAD]", "i4", "i3", "i2", "i1"] and data.num_items == 4
  assert data.user_raw == ["b", "a"]
  b, a = data.user_index("b"), data.user_index("a")
  assert data.sequences[a].tolist() == [4, 3, 1, 2]  # i1@10, i2@20, i4@20 (file order), i3@30
  assert data.sequences[b].tolist() == [3, 4, 2, 1]  # i2@5, i1@5 (file order), i3@7, i4@9
  assert data.timestamps[a].tolist() == [10, 20, 20, 30]
  assert data.sequences[a].dtype == np.int32 and data.timestamps[a].dtype == np.int64
  assert data.train_sequence(a).tolist() == [4, 3]
  hist, target = data.eval_example(a, "valid")
  assert hist.tolist() == [4, 3] and target == 1
  hist, target = data.eval_example(a, "test")
  assert hist.tolist() == [4, 3, 1] and target == 2


def test_short_users_dropped_and_counted(tmp_path):
  data = prepare(toy(tmp_path), DataConfig())
  s = data.stats
  assert s["users_dropped_short"] == 1 and s["interactions_dropped_short"] == 2
  assert s["interactions_read"] == 10 and s["interactions_kept"] == 8
  with pytest.raises(KeyError, match="unknown user 'c'"):
    data.user_index("c")
  for what in ("interactions", "users", "items"):
    dropped = sum(s[f"{what}_dropped_{step}"] for step in ("rating", "kcore", "short"))
    assert s[f"{what}_read"] == dropped + s[f"{what}_kept"]


def test_min_rating(tmp_path):
  data = prepare(toy(tmp_path), DataConfig(min_rating=4))
  assert data.user_raw == ["a"]  # b keeps 2 ratings >= 4, then is too short
  assert data.stats["interactions_dropped_rating"] == 2 and data.stats["users_dropped_short"] == 2


def test_kcore_is_iterative(tmp_path):
  rows = [
    ("x", "i1"),
    ("x", "i2"),
    ("x", "i3"),
    ("y", "i1"),
    ("y", "i2"),
    ("y", "i3"),
    ("z", "i1"),
    ("z", "i9"),
    ("w", "i9"),
  ]
  inter = "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows)
  raw = toy(tmp_path, inter=inter, item=None, user=None, name="k")
  data = prepare(raw, DataConfig(kcore=2))
  # w (1) goes first, then i9 (now 1), then z (now 1): three rounds to settle.
  assert data.user_raw == ["x", "y"] and data.item_raw == ["[PAD]", "i1", "i2", "i3"]
  s = data.stats
  assert (s["users_dropped_kcore"], s["items_dropped_kcore"], s["interactions_dropped_kcore"]) == (2, 1, 3)
  assert s["kcore_rounds"] >= 3
  assert prepare(raw, DataConfig(kcore=0, min_user_interactions=1)).num_users == 4


def test_without_item_table_ids_follow_numeric_order(tmp_path):
  inter = "user_id:token\titem_id:token\n" + "".join(f"7\t{i}\n" for i in ("10", "9", "2"))
  data = prepare(toy(tmp_path, inter=inter, item=None, user=None, name="n"), DataConfig())
  assert data.item_raw == ["[PAD]", "2", "9", "10"] and data.sequences[0].tolist() == [3, 2, 1]
  assert data.item_genres is None and data.item_titles == [""] * 4 and data.user_features == {}


def test_item_text_titles_genres(tmp_path):
  data = prepare(toy(tmp_path), DataConfig())
  assert data.item_titles == ["", "Heat", "", "Some Film (1995)", "Toy Story"]
  assert data.item_text == [
    "",
    "Heat (1995). Genres: Action, Crime.",
    "",
    "Some Film (1995). Genres: Drama.",
    "Toy Story (1995). Genres: Animation, Comedy.",
  ]
  assert data.genre_names == ["Action", "Animation", "Comedy", "Crime", "Drama"]
  assert data.item_genres.shape == (5, 5) and data.item_genres.dtype == np.float32
  assert data.item_genres[1].tolist() == [1, 0, 0, 1, 0] and data.item_genres[2].sum() == 0


def test_user_features(tmp_path):
  data = prepare(toy(tmp_path), DataConfig())
  assert data.user_features == {"age": ["45-54", "18-24"], "gender": ["F", "M"], "occupation": ["none", "unknown"]}
  assert [age_bucket(a) for a in ("1", "17", "18", "25", "35", "45", "50", "56", "x", "")] == [
    "<18",
    "<18",
    "18-24",
    "25-34",
    "35-44",
    "45-54",
    "45-54",
    "55+",
    "x",
    "unknown",
  ]


def test_unknown_item_names_item_file_and_line(tmp_path):
  raw = toy(tmp_path, inter=INTER + "a\ti1990\t5\t40\n")
  with pytest.raises(
    errors.UnknownIdError, match=r"item id 'i1990' in toy.inter \(line 12\) is not in toy.item \(5 items\)"
  ):
    prepare(raw, DataConfig())


def test_unknown_user_and_duplicate_item(tmp_path):
  with pytest.raises(errors.UnknownIdError, match=r"user id 'c' in toy.inter \(line 9\) is not in toy.user"):
    prepare(toy(tmp_path, user=USER.replace("c\t7\tM\tstudent\n", "")), DataConfig())
  with pytest.raises(errors.DuplicateIdError, match=r"item id 'i4' appears twice in toy.item \(line 2 and line 7\)"):
    prepare(toy(tmp_path, item=ITEM + "i4\tAgain\t1999\tDrama\n"), DataConfig())


def test_nothing_left_is_a_clear_error(tmp_path):
  with pytest.raises(DataError, match="no user has >= 3 interactions"):
    prepare(toy(tmp_path), DataConfig(min_rating=6))


def test_load_dataset_atomic_and_unknown(tmp_path):
  toy(tmp_path)
  data = load_dataset(DataConfig(dataset=f"atomic:{tmp_path}/toy"))
  assert data.name == "toy" and data.num_users == 2
  with pytest.raises(DataError, match="unknown dataset 'ml-7'"):
    load_dataset(DataConfig(dataset="ml-7"))


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="needs pip install --no-deps recbole==1.2.1")
def test_ml100k_from_recbole_copy():
  data = load_dataset(DataConfig(dataset="ml-100k"))
  assert (data.num_users, data.num_items) == (943, 1682)
  assert data.stats["interactions_read"] == 100_000
  assert sum(len(s) for s in data.sequences) == 100_000
  assert all(np.all(np.diff(t) >= 0) for t in data.timestamps)
  item = data.item_raw.index("1")
  assert "Toy Story" in data.item_text[item] and data.item_titles[item] == "Toy Story"
  assert data.item_text[data.item_raw.index("1412")].endswith("(1995). Genres: Animation, Children's.")
  assert data.item_genres.shape[0] == 1683 and set(data.user_features["gender"]) == {"F", "M"}
  assert len(set(data.user_features["age"])) <= 7
  assert load_dataset(DataConfig(dataset="ml-100k", max_len=7)) is data  # cached per process


def test_missing_movielens_says_how_to_get_it(tmp_path, monkeypatch):
  import genrec.data

  monkeypatch.setattr(genrec.data, "find_recbole_dataset", lambda name: None)
  how = r"pip install --no-deps recbole==1.2.1.*genrec datasets prepare ml-100k"
  with pytest.raises(errors.DataNotFoundError, match=how):
    load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path)))
