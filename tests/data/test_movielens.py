"""MovieLens builders on small fixture zips: real download (local HTTP), parse, array_record write, data_source read."""

from __future__ import annotations

import http.server
import os
import tempfile
import zipfile

import numpy as np
import pytest

from fixtures_http import serve
from genrec.data import movielens
from genrec.data.movielens import DataError, movielens_tables

GENRES_100K = [
  "unknown",
  "Action",
  "Adventure",
  "Animation",
  "Children's",
  "Comedy",
  "Crime",
  "Documentary",
  "Drama",
  "Fantasy",
  "Film-Noir",
  "Horror",
  "Musical",
  "Mystery",
  "Romance",
  "Sci-Fi",
  "Thriller",
  "War",
  "Western",
]

# ml-100k: (user, item, rating, timestamp) in file order, deliberately not time-sorted, with ties.
RATINGS_100K = [
  (3, 2, 4, 881250949),
  (1, 1, 5, 874965758),
  (5, 6, 1, 891717742),
  (1, 3, 3, 874965758),
  (2, 1, 4, 888550871),
  (4, 4, 2, 879024327),
  (3, 5, 5, 881250949),
  (2, 6, 3, 888550800),
  (5, 1, 4, 891717742),
  (4, 2, 1, 879024327),
  (1, 6, 2, 874965700),
  (3, 3, 4, 881251000),
]
ITEMS_100K = [  # id, raw title, release date, genres
  (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"]),
  (2, "GoldenEye (1995)", "01-Jan-1995", ["Action", "Adventure", "Thriller"]),
  (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"]),
  (4, "unknown", "", ["unknown"]),
  (5, "Land Before Time III: The Time of the Great Giving (1995) (V)", "01-Jan-1995", ["Animation", "Children's"]),
  (6, "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", "01-Jan-1995", ["Drama"]),
]
USERS_100K = [
  (1, "24", "M", "technician", "85711"),
  (2, "53", "F", "other", "94043"),
  (3, "23", "M", "writer", "32067"),
  (4, "24", "M", "technician", "43537"),
  (5, "33", "F", "other", "15213"),
]

RATINGS_1M = [
  (2, 10, 5, 978300760),
  (1, 20, 3, 978302109),
  (1, 10, 4, 978301968),
  (3, 30, 2, 978300275),
  (2, 20, 1, 978300760),
]
MOVIES_1M = [
  (10, "Toy Story (1995)", "Animation|Children's|Comedy"),
  (20, "Cité des enfants perdus, La (1995)", "Adventure|Sci-Fi"),
  (30, "Heat (1995)", "Action"),
]
USERS_1M = [(1, "F", "1", "10", "48067"), (2, "M", "56", "16", "70072"), (3, "M", "25", "15", "55117")]

RATINGS_20M = [
  (1, 11, 3.5, 1112486027),
  (1, 29, 4.0, 1112484676),
  (2, 11, 0.5, 974820889),
  (3, 131262, 5.0, 1427771297),
  (2, 29, 2.5, 974820889),
]
MOVIES_20M = [
  (
    11,
    "American President, The (1995)",
    "Comedy|Drama|Romance",
    "American President, The",
    "1995",
    ["Comedy", "Drama", "Romance"],
  ),
  (
    29,
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
    "Comedy|Romance",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le)",
    "2001",
    ["Comedy", "Romance"],
  ),
  (131262, "Innocence (2014)", "(no genres listed)", "Innocence", "2014", []),
  (40, "Babylon 5", "Sci-Fi", "Babylon 5", "", ["Sci-Fi"]),
]


def _zip_100k(path: str) -> None:
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS_100K))
    z.writestr("ml-100k/u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES_100K)) + "\n")
    lines = []
    for i, title, date, genres in ITEMS_100K:
      flags = "|".join("1" if g in genres else "0" for g in GENRES_100K)
      lines.append(f"{i}|{title}|{date}||http://us.imdb.com/M/title-exact?x|{flags}\n")
    z.writestr("ml-100k/u.item", "".join(lines).encode("latin-1"))
    z.writestr("ml-100k/u.user", "".join("|".join(map(str, u)) + "\n" for u in USERS_100K))
    z.writestr("ml-100k/README", "fixture")


def _zip_1m(path: str) -> None:
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("ml-1m/ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in RATINGS_1M))
    z.writestr("ml-1m/movies.dat", "".join("::".join(map(str, m)) + "\n" for m in MOVIES_1M).encode("latin-1"))
    z.writestr("ml-1m/users.dat", "".join("::".join(map(str, u)) + "\n" for u in USERS_1M))


def _zip_20m(path: str) -> None:
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr(
      "ml-20m/ratings.csv",
      "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in RATINGS_20M),
    )
    movies = "movieId,title,genres\n" + "".join(
      f'{m},"{t}",{g}\n' if "," in t else f"{m},{t},{g}\n" for m, t, g, *_ in MOVIES_20M
    )
    z.writestr("ml-20m/movies.csv", movies.encode("utf-8"))
    z.writestr("ml-20m/links.csv", "movieId,imdbId,tmdbId\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """Fixture zips: ml-100k over local HTTP, ml-1m in the manual dir, ml-20m as a local path."""
  root = tmp_path_factory.mktemp("movielens")
  srv_dir, data_dir = root / "srv", root / "tfds"
  manual = data_dir / "downloads" / "manual"
  srv_dir.mkdir()
  manual.mkdir(parents=True)
  _zip_100k(str(srv_dir / "ml-100k.zip"))
  _zip_1m(str(manual / "ml-1m.zip"))
  _zip_20m(str(root / "ml-20m.zip"))
  gets = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

    def do_GET(self):
      gets.append(self.path)
      super().do_GET()

  with serve(srv_dir, Handler) as (port, mp):
    mp.setitem(movielens.URLS, "ml-100k", f"http://127.0.0.1:{port}/ml-100k.zip")
    mp.setitem(movielens.URLS, "ml-1m", "http://127.0.0.1:9/must-not-be-fetched.zip")
    mp.setitem(movielens.URLS, "ml-20m", str(root / "ml-20m.zip"))
    yield {"data_dir": str(data_dir), "gets": gets}


@pytest.fixture(scope="module")
def ml100k(served):
  return movielens_tables("ml-100k", served["data_dir"])


def test_100k_interactions_in_file_order(ml100k, served):
  inter = ml100k.inter
  assert set(inter) == {"user_id", "item_id", "rating", "timestamp"}
  assert inter["user_id"].tolist() == [str(r[0]) for r in RATINGS_100K]
  assert inter["item_id"].tolist() == [str(r[1]) for r in RATINGS_100K]
  assert inter["rating"].dtype == np.float32 and inter["rating"].tolist() == [float(r[2]) for r in RATINGS_100K]
  assert inter["timestamp"].dtype == np.int64 and inter["timestamp"].tolist() == [r[3] for r in RATINGS_100K]
  assert served["gets"] == ["/ml-100k.zip"]  # one download shared by the three tables


def test_100k_items(ml100k):
  items = ml100k.items
  assert items["item_id"].tolist() == [str(i[0]) for i in ITEMS_100K]
  assert items["title"].tolist() == [
    "Toy Story",
    "GoldenEye",
    "Misérables, Les",
    "unknown",
    "Land Before Time III: The Time of the Great Giving (1995) (V)",
    "Shanghai Triad (Yao a yao yao dao waipo qiao)",
  ]
  assert items["year"].tolist() == ["1995", "1995", "1995", "", "", "1995"]
  assert items["release_date"].tolist() == [i[2] for i in ITEMS_100K]
  assert items["genres"].dtype == object
  assert list(items["genres"]) == [i[3] for i in ITEMS_100K]  # u.genre order


def test_100k_users(ml100k):
  users = ml100k.users
  assert users["user_id"].tolist() == [str(u[0]) for u in USERS_100K]
  for k, col in enumerate(["age", "gender", "occupation", "zip"], start=1):
    assert users[col].tolist() == [u[k] for u in USERS_100K]
  assert ml100k.name == "ml-100k"


def test_1m_from_manual_dir(served):
  t = movielens_tables("ml-1m", served["data_dir"])
  assert t.inter["user_id"].tolist() == [str(r[0]) for r in RATINGS_1M]
  assert t.inter["item_id"].tolist() == [str(r[1]) for r in RATINGS_1M]
  assert t.inter["rating"].tolist() == [float(r[2]) for r in RATINGS_1M]
  assert t.inter["timestamp"].tolist() == [r[3] for r in RATINGS_1M]
  assert t.items["item_id"].tolist() == ["10", "20", "30"]
  assert t.items["title"].tolist() == ["Toy Story", "Cité des enfants perdus, La", "Heat"]
  assert t.items["year"].tolist() == ["1995"] * 3
  assert list(t.items["genres"]) == [["Animation", "Children's", "Comedy"], ["Adventure", "Sci-Fi"], ["Action"]]
  assert "release_date" not in t.items
  assert t.users["user_id"].tolist() == ["1", "2", "3"]
  assert t.users["gender"].tolist() == ["F", "M", "M"]
  assert t.users["age"].tolist() == ["1", "56", "25"]
  assert t.users["occupation"].tolist() == ["10", "16", "15"]
  assert t.users["zip"].tolist() == ["48067", "70072", "55117"]


def test_20m_csv(served):
  t = movielens_tables("ml-20m", served["data_dir"])
  assert t.users is None
  assert t.inter["user_id"].tolist() == [str(r[0]) for r in RATINGS_20M]
  assert t.inter["item_id"].tolist() == [str(r[1]) for r in RATINGS_20M]
  assert t.inter["rating"].tolist() == [r[2] for r in RATINGS_20M]
  assert t.inter["timestamp"].tolist() == [r[3] for r in RATINGS_20M]
  assert t.items["item_id"].tolist() == [str(m[0]) for m in MOVIES_20M]
  assert t.items["title"].tolist() == [m[3] for m in MOVIES_20M]
  assert t.items["year"].tolist() == [m[4] for m in MOVIES_20M]
  assert list(t.items["genres"]) == [m[5] for m in MOVIES_20M]


def test_interactions_span_several_records(served, tmp_path, monkeypatch):
  monkeypatch.setattr(movielens, "CHUNK_ROWS", 5)
  t = movielens_tables("ml-100k", str(tmp_path))
  assert t.inter["user_id"].tolist() == [str(r[0]) for r in RATINGS_100K]
  assert t.inter["timestamp"].tolist() == [r[3] for r in RATINGS_100K]


def test_prepared_data_reads_without_download(ml100k, served, capsys):
  gets = len(served["gets"])
  again = movielens_tables("ml-100k", served["data_dir"], download=False)
  np.testing.assert_array_equal(again.inter["item_id"], ml100k.inter["item_id"])
  root = movielens.prepare("ml-100k", served["data_dir"])
  assert root == os.path.join(served["data_dir"], "genrec_movielens")
  assert root in capsys.readouterr().out
  assert len(served["gets"]) == gets


def test_not_prepared_without_download(tmp_path):
  with pytest.raises(DataError, match="genrec datasets prepare ml-1m"):
    movielens_tables("ml-1m", str(tmp_path), download=False)


def test_download_failure_is_quick_and_clear(served, tmp_path, monkeypatch):
  bad = movielens.URLS["ml-100k"].replace("ml-100k.zip", "missing.zip")
  monkeypatch.setitem(movielens.URLS, "ml-1m", bad)
  with pytest.raises(DataError, match="HTTP 404"):
    movielens_tables("ml-1m", str(tmp_path))


def test_malformed_ratings_name_the_file(tmp_path, monkeypatch):
  bad = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(bad, "w") as z:
    z.writestr("ml-1m/ratings.dat", "1::10::5::978300760\n1::oops::3::978300761\n")
    z.writestr("ml-1m/movies.dat", "10::Heat (1995)::Action\n")
    z.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
  monkeypatch.setitem(movielens.URLS, "ml-1m", str(bad))
  with pytest.raises(DataError, match="ratings.dat.*oops"):
    movielens_tables("ml-1m", str(tmp_path / "tfds"))


def test_unknown_name(tmp_path):
  with pytest.raises(DataError, match="ml-100k, ml-1m, ml-20m"):
    movielens_tables("ml-10m", str(tmp_path))


@pytest.mark.parametrize(
  "title,expected",
  [
    ("Toy Story (1995)", ("Toy Story", "1995")),
    ("Babylon 5", ("Babylon 5", "")),
    ("Fawlty Towers (1975-1979)", ("Fawlty Towers", "1975")),
    ("Heat (1995) ", ("Heat", "1995")),
  ],
)
def test_split_title(title, expected):
  assert movielens.split_title(title) == expected


def test_unprepared_builders_leave_no_temp_folders(tmp_path, monkeypatch):
  """TFDS looks up pre-computed info of an unprepared dataset in its GCS bucket through a temp folder that it
  never removes; genrec's builders skip the lookup (their datasets are not there)."""
  temp = tmp_path / "temp"
  temp.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(temp))
  with pytest.raises(DataError):
    movielens_tables("ml-1m", str(tmp_path / "data"), download=False)
  assert list(temp.iterdir()) == []
