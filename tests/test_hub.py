"""Published runs (genrec.hub): `genrec publish` writes a self-contained folder; genrec.load / genrec eval /
--init-from read it from a folder, a loopback https-style server or a fake Hub endpoint, checked against the
sha256 manifest before anything is read, fetched once, resumed after a broken download. No test touches the
internet."""

from __future__ import annotations

import http.server
import json
import os
import shutil
from pathlib import Path

import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
from fixtures_http import serve
from genrec import hub
from genrec.api import evaluate_run
from genrec.errors import CheckpointError, ConfigError
from genrec.files import PathEscapeError

METRICS = ("ndcg@10", "recall@10", "mrr@10")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
  """Serves files with HTTP Range support; `break_once` names a file whose first download stops halfway.
  Every request is recorded (path, Range header) in `log`."""

  log: list = []
  break_once: set = set()

  def log_message(self, *args):
    pass

  def do_GET(self):
    path = Path(self.translate_path(self.path))
    type(self).log.append((self.path, self.headers.get("Range")))
    if not path.is_file():
      self.send_error(404)
      return
    body = path.read_bytes()
    start = 0
    if self.headers.get("Range"):
      start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
      self.send_response(200)
    self.send_header("Content-Length", str(len(body) - start))
    self.end_headers()
    if self.path in type(self).break_once:
      type(self).break_once.discard(self.path)
      self.wfile.write(body[start : start + (len(body) - start) // 2])
      self.wfile.flush()
      self.connection.shutdown(2)  # the connection drops mid-file
      return
    self.wfile.write(body[start:])


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  run = runs.sasrec_run(tmp_path_factory)
  root = tmp_path_factory.mktemp("served")
  out = hub.publish(run["dir"], root / "pub")
  return run, root, out


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
  RangeHandler.log, RangeHandler.break_once = [], set()
  return tmp_path / "cache"


def assert_reproduces(run, results):
  again = evaluate_run(run, write=False)
  for k in METRICS:
    assert again["test"][k] == pytest.approx(results["test"][k], abs=1e-6), k


def test_publish_writes_a_self_contained_checked_folder(published, tmp_path):
  run, _, out = published
  manifest = json.loads((out / hub.MANIFEST).read_text())
  assert (
    manifest["format"] == hub.FORMAT
    and manifest["model"] == "sasrec"
    and manifest["step"] == run["results"]["best_step"]
  )
  files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {hub.MANIFEST}
  assert set(manifest["files"]) == files and "README.md" in files and "config.json" in files
  assert not any(f.startswith("checkpoints/") for f in files)  # only the kept model, no optimizer state
  for rel, entry in manifest["files"].items():
    assert entry["sha256"] == hub.sha256(out / rel) and entry["size"] == (out / rel).stat().st_size
  card = (out / "README.md").read_text()
  assert f"{run['results']['test']['ndcg@10']:.4f}" in card and '"split": "leave_one_out"' in card
  assert manifest["expected"]["test"]["ndcg@10"] == run["results"]["test"]["ndcg@10"]
  with pytest.raises(ConfigError, match="exists and is not empty"):
    hub.publish(run["dir"], out)
  (tmp_path / "unfinished" / "best").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="has no results.json"):
    hub.publish(tmp_path / "unfinished", tmp_path / "o")


def test_a_published_folder_loads_and_reproduces_its_metrics_and_is_checked(published, tmp_path):
  run, _, out = published
  assert_reproduces(genrec.load(out), run["results"])
  copy = shutil.copytree(out, tmp_path / "copy")
  victim = next(p for p in (copy / "best").rglob("*") if p.is_file() and p.stat().st_size > 64)
  victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
  with pytest.raises(CheckpointError, match="does not match its published size and sha256"):
    genrec.load(copy)


def test_load_by_url_fetches_once_into_the_cache_and_reproduces(published, cache):
  run, root, _ = published
  with serve(root, RangeHandler) as (port, _):
    url = f"http://127.0.0.1:{port}/pub"
    loaded = genrec.load(url)
    assert loaded.workdir.is_relative_to(cache / "hub")
    assert_reproduces(loaded, run["results"])
    fetched = [p for p, _ in RangeHandler.log if p != "/pub/manifest.json"]
    assert len(fetched) == len(json.loads((root / "pub" / hub.MANIFEST).read_text())["files"])
    RangeHandler.log.clear()
    genrec.load(url)  # again: only the manifest is asked for
    assert [p for p, _ in RangeHandler.log] == ["/pub/manifest.json"]
    before = {p: p.read_bytes() for p in loaded.workdir.rglob("*") if p.is_file()}
    code, out, err = runs.genrec_cli("eval", url)
    assert code == 0, err
    assert f"{run['results']['test']['ndcg@10']:.4f}" in out
    # The cached copy stays as published: no results.json update, no TensorBoard events written into it.
    assert "is a published run: its results.json and TensorBoard stay as published" in err
    assert {p: p.read_bytes() for p in loaded.workdir.rglob("*") if p.is_file()} == before
    assert not (loaded.workdir / "tensorboard").exists()


def test_a_broken_download_resumes_where_it_stopped(published, cache, monkeypatch):
  run, root, out = published
  monkeypatch.setattr(hub, "CHUNK", 1024)
  biggest = max(json.loads((out / hub.MANIFEST).read_text())["files"].items(), key=lambda kv: kv[1]["size"])
  RangeHandler.break_once = {f"/pub/{biggest[0]}"}
  with serve(root, RangeHandler) as (port, _):
    loaded = genrec.load(f"http://127.0.0.1:{port}/pub")
  asks = [r for p, r in RangeHandler.log if p == f"/pub/{biggest[0]}"]
  assert asks[0] is None and asks[1].startswith("bytes=")
  kept = int(asks[1].removeprefix("bytes=").rstrip("-"))
  assert biggest[1]["size"] // 2 - 1024 <= kept <= biggest[1]["size"] // 2  # the second asks for the rest only
  assert hub.sha256(loaded.workdir / biggest[0]) == biggest[1]["sha256"]
  assert_reproduces(loaded, run["results"])


def test_a_served_file_that_differs_from_the_manifest_is_refused(published, cache, tmp_path):
  _, _, out = published
  root = tmp_path / "served"
  shutil.copytree(out, root / "pub")
  (root / "pub" / "config.json").write_text((out / "config.json").read_text().replace("sasrec", "sasrek", 1))
  with serve(root, RangeHandler) as (port, _):
    with pytest.raises(
      CheckpointError, match="the downloaded config.json does not match its published size and sha256"
    ):
      genrec.load(f"http://127.0.0.1:{port}/pub")
    with pytest.raises(CheckpointError, match="answered HTTP 404; is it a folder written by genrec publish"):
      genrec.load(f"http://127.0.0.1:{port}/nothing-here")
  assert not list((cache / "hub").rglob("config.json*"))  # nothing half-written is left to be read
  with pytest.raises(CheckpointError, match="cannot reach"):
    genrec.load(f"http://127.0.0.1:{port}/pub")  # the server is gone


def test_hf_uris_resolve_through_the_hub_endpoint_with_a_pinned_revision(published, cache, tmp_path, monkeypatch):
  run, _, out = published
  root = tmp_path / "hub"
  shutil.copytree(out, root / "acme" / "sasrec-tiny" / "resolve" / "v1")
  with serve(root, RangeHandler) as (port, _):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert_reproduces(genrec.load("hf://acme/sasrec-tiny@v1"), run["results"])
    with pytest.raises(CheckpointError, match="resolve/main/manifest.json answered HTTP 404"):
      genrec.load("hf://acme/sasrec-tiny")  # no such revision on this fake hub
    code, _, err = runs.genrec_cli(
      "train", "sasrec:tiny", "--workdir", tmp_path / "warm", "--init-from", "hf://acme/sasrec-tiny@v1",
      "--set", "trainer.steps=2", "trainer.eval_every=2", "trainer.progress=false",
    )  # fmt: skip
    assert code == 0, err
    assert "warm start from" in err
  with pytest.raises(ConfigError, match="hf://ORG/NAME or hf://ORG/NAME@REVISION"):
    genrec.load("hf://just-a-name")


def test_manifest_entries_cannot_leave_the_folder(published, cache, tmp_path):
  _, _, out = published
  root = tmp_path / "served"
  shutil.copytree(out, root / "pub")
  manifest = json.loads((root / "pub" / hub.MANIFEST).read_text())
  manifest["files"]["../../outside.txt"] = {"size": 1, "sha256": "0" * 64}
  (root / "pub" / hub.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(PathEscapeError, match="outside the run folder"):
    genrec.load(root / "pub")
  with serve(root, RangeHandler) as (port, _):
    with pytest.raises(PathEscapeError, match="outside the run folder"):
      genrec.load(f"http://127.0.0.1:{port}/pub")
  assert not (cache.parent / "outside.txt").exists() and not os.path.exists(tmp_path / "outside.txt")
