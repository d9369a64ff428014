"""`genrec recommend --users` and `Run.recommend_all`: many users in sharded batches, each row what the one-user
`Run.recommend` gives, real and unseen; the output files and the errors."""

import json

import numpy as np
import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec

genrec_cli = runs.genrec_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(run):
  return genrec.load(run["dir"])


def assert_every_user_gets_k_real_unseen_ranked(rows, data, k):
  """rows: one per user of `data`, in order; each k distinct catalogue items the user has not seen, best first."""
  assert [r["user"] for r in rows] == data.user_raw
  catalogue = set(data.item_raw[1:])
  for u, row in enumerate(rows):
    seen = {data.item_raw[i] for i in data.sequences[u].tolist()}
    assert len(row["items"]) == len(set(row["items"])) == k
    assert set(row["items"]) <= catalogue and not set(row["items"]) & seen
    assert row["scores"] == sorted(row["scores"], reverse=True)


def test_batches_match_the_one_user_path(loaded):
  """Users split over batches of 8 rows (the last one padded) on 8 devices: the same items in the same order."""
  data = loaded.dataset()
  users = [data.user_raw[u] for u in (0, 3, 5, 11, 17, 2, 29, 30, 31, 40, 7)]
  rows = loaded.recommend_all(users, k=7, batch_size=8)
  assert [r["user"] for r in rows] == users
  for row in rows:
    one = loaded.recommend(row["user"], k=7)
    assert row["items"] == [r["item"] for r in one]
    np.testing.assert_allclose(row["scores"], [r["score"] for r in one], rtol=1e-5, atol=1e-6)


def test_a_run_reads_its_dataset_once(run, monkeypatch):
  """Run.recommend per user used to re-read and re-prepare the dataset on every call (1.2 users/s)."""
  import genrec.data

  fresh = genrec.load(run["dir"])
  calls = []
  real = genrec.data.load_dataset
  monkeypatch.setattr(genrec.data, "load_dataset", lambda cfg: calls.append(cfg) or real(cfg))
  first = [fresh.recommend(u, k=3) for u in ("u0", "u1", "u2")]
  assert len(calls) == 1 and all(len(r) == 3 for r in first)
  assert fresh.dataset() is fresh.dataset()


def test_every_user_gets_k_real_unseen_items_ranked(loaded):
  data = loaded.dataset()
  rows = loaded.recommend_all(k=5, batch_size=24)
  assert_every_user_gets_k_real_unseen_ranked(rows, data, 5)


def test_cli_writes_jsonl_for_a_user_file(run, tmp_path, loaded):
  data = loaded.dataset()
  users = [data.user_raw[9], data.user_raw[1], data.user_raw[9]]
  (tmp_path / "users.txt").write_text("\n".join(users) + "\n\n")
  out = tmp_path / "recs.jsonl"
  code, _, err = genrec_cli("recommend", run["dir"], "--users", tmp_path / "users.txt", "--k", 4, "--out", out)
  assert code == 0, err
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["user"] for r in rows] == users
  assert rows == loaded.recommend_all(users, k=4)
  assert not list(tmp_path.glob(".recs.jsonl.*"))  # written through a temporary sibling, renamed


def test_cli_writes_parquet_for_all_users(run, tmp_path, loaded):
  import pyarrow.parquet as pq  # installed with tensorflow-datasets, a dependency

  out = tmp_path / "recs.parquet"
  code, _, err = genrec_cli("recommend", run["dir"], "--users", "all", "--k", 3, "--out", out, "--quiet")
  assert code == 0, err
  table = pq.read_table(out).to_pylist()
  expected = loaded.recommend_all(k=3)
  assert [r["user"] for r in table] == [r["user"] for r in expected]
  assert [r["items"] for r in table] == [r["items"] for r in expected]
  np.testing.assert_allclose([r["scores"] for r in table], [r["scores"] for r in expected], rtol=1e-6)


def test_an_unknown_user_in_the_file_is_named_with_its_line(run, tmp_path, loaded):
  data = loaded.dataset()
  (tmp_path / "users.txt").write_text(f"{data.user_raw[0]}\nnobody-42\n")
  out = tmp_path / "recs.jsonl"
  code, _, err = genrec_cli("recommend", run["dir"], "--users", tmp_path / "users.txt", "--out", out)
  assert code == 2
  assert "users.txt line 2: unknown user 'nobody-42'" in err and "Traceback" not in err
  assert not out.exists()


def test_k_out_of_range_names_the_user_with_fewest_unseen(loaded):
  data = loaded.dataset()
  with pytest.raises(ValueError, match="k must be between 1 and"):
    loaded.recommend_all([data.user_raw[0]], k=0)
  fewest = min(range(data.num_users), key=lambda u: data.num_items - len(set(data.sequences[u].tolist())))
  limit = data.num_items - len(set(data.sequences[fewest].tolist()))
  with pytest.raises(ValueError, match=f"between 1 and {limit}, .*user {data.user_raw[fewest]}\\), got {limit + 1}"):
    loaded.recommend_all(k=limit + 1)
  assert len(loaded.recommend_all([data.user_raw[fewest]], k=limit)[0]["items"]) == limit


def test_bad_output_suffix_is_refused_before_any_work(run, tmp_path):
  code, _, err = genrec_cli("recommend", run["dir"], "--users", "all", "--out", tmp_path / "recs.csv")
  assert code == 2 and "FILE.jsonl or FILE.parquet" in err


def test_parquet_without_pyarrow_names_what_to_install(run, tmp_path, monkeypatch):
  import sys

  monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
  code, _, err = genrec_cli("recommend", run["dir"], "--users", "all", "--out", tmp_path / "recs.parquet")
  assert code == 2 and "pyarrow is not installed (writing " in err and "pip install 'genrec[parquet]'" in err
  assert not (tmp_path / "recs.parquet").exists()


def test_progress_bar_only_when_asked_and_stdout_without_out(run, loaded, monkeypatch, capsys):
  data = loaded.dataset()
  monkeypatch.delenv("TQDM_DISABLE", raising=False)
  loaded.recommend_all(data.user_raw[:3], k=2, progress=True)
  assert "recommend: 100%" in capsys.readouterr().err
  loaded.recommend_all(data.user_raw[:3], k=2)
  assert capsys.readouterr().err == ""
  code, out, err = genrec_cli("recommend", run["dir"], "--users", "all", "--k", 2)  # stderr is no tty here
  assert code == 0 and "recommend:" not in err
  assert [json.loads(line) for line in out.splitlines()] == loaded.recommend_all(k=2)


def test_tiger_cli_all_users_real_unseen_and_as_run_recommend(tmp_path_factory, tmp_path):
  """TIGER's constrained beam search in batches: every user's row is k real items they have not seen, and a
  user's row is what the one-user Run.recommend gives."""
  workdir = runs.tiger_run(tmp_path_factory)
  out = tmp_path / "recs.jsonl"
  code, _, err = genrec_cli("recommend", workdir, "--users", "all", "--k", 5, "--out", out, "--batch-size", 16)
  assert code == 0, err
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  tiger = genrec.load(workdir)
  data = tiger.dataset()
  assert_every_user_gets_k_real_unseen_ranked(rows, data, 5)
  for u in (0, 7, len(rows) - 1):
    one = tiger.recommend(rows[u]["user"], k=5)
    assert rows[u]["items"] == [r["item"] for r in one]
    np.testing.assert_allclose(rows[u]["scores"], [r["score"] for r in one], rtol=1e-5, atol=1e-5)
