"""`genrec export`: the recommender as a jax.export artifact that a process without genrec (jax + numpy only)
loads, checks and calls, with the same top-k as `Run.recommend`."""

import hashlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)
import genrec
from genrec.serve.export import export_run

# What a serving process runs: no genrec, no flax; numpy, hashlib and jax.export only.
CONSUMER = r"""
import hashlib, json, sys
from pathlib import Path
import numpy as np
import jax

folder, queries = Path(sys.argv[1]), json.loads(sys.argv[2])
manifest = json.loads((folder / "manifest.json").read_text())
for name, f in manifest["files"].items():
  assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == f["sha256"], name
exported = jax.export.deserialize((folder / "recommend.jax").read_bytes())
with np.load(folder / "params.npz", allow_pickle=False) as npz:
  params = {name: npz[name] for name in npz.files}
item_id = {raw: i for i, raw in enumerate(manifest["items"])}
user_id = {raw: i for i, raw in enumerate(manifest.get("users", []))}
shapes = {i["name"]: i["shape"] for i in manifest["inputs"]}
max_len, width = shapes["history"][1], shapes["seen"][1]
out = {}
for group in queries:  # users called together, one batch per group (padded to a fixed batch if there is one)
  rows = len(group) if manifest["batch"] == "symbolic" else manifest["batch"]
  width = width if isinstance(width, int) else max(len(h) for h in group.values())
  fields = {"history": np.zeros((rows, max_len), np.int32), "seen": np.zeros((rows, width), np.int32)}
  fields["user"] = np.zeros(rows, np.int32)
  for row, (user, items) in enumerate(group.items()):
    ids = [item_id[raw] for raw in items]
    fields["history"][row, max_len - min(len(ids), max_len):] = ids[-max_len:]
    fields["seen"][row, :len(ids)] = ids
    fields["user"][row] = user_id.get(user, 0)
  top, scores = exported.call(params, *[fields[name] for name in shapes])
  for row, user in enumerate(group):
    items = [manifest["items"][i] for i in np.asarray(top[row])]
    out[user] = {"items": items, "scores": np.asarray(scores[row]).tolist()}
print(json.dumps({"out": out, "genrec": "genrec" in sys.modules, "flax": "flax" in sys.modules}))
"""


def consume(folder, groups) -> dict:
  """CONSUMER run on `folder` in a fresh process (cwd there, no PYTHONPATH: genrec is not importable from it)."""
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  proc = subprocess.run(
    [sys.executable, "-c", CONSUMER, str(folder), json.dumps(groups)],
    capture_output=True,
    text=True,
    env={**env, "JAX_PLATFORMS": "cpu"},
    timeout=300,
    cwd=folder,
  )
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  out = tmp_path_factory.mktemp("export") / "sasrec"
  code, stdout, err = runs.genrec_cli("export", run["dir"], "--out", out, "--k", 6)
  assert code == 0, err
  assert "batch symbolic" in stdout
  return out


def test_a_fresh_process_without_genrec_matches_run_recommend(run, exported):
  loaded = genrec.load(run["dir"])
  data = loaded.dataset()
  history = lambda u: [data.item_raw[i] for i in data.sequences[u].tolist()]
  groups = [{data.user_raw[u]: history(u) for u in (0, 5, 17)}, {data.user_raw[u]: history(u) for u in (23,)}]
  result = consume(exported, groups)
  assert result["genrec"] is False and result["flax"] is False
  assert len(result["out"]) == 4  # batches of 3 and 1 through one symbolic-batch export
  for user, got in result["out"].items():
    want = loaded.recommend(user, k=6)
    assert got["items"] == [r["item"] for r in want]
    np.testing.assert_allclose(got["scores"], [r["score"] for r in want], rtol=1e-5, atol=1e-6)


def test_the_manifest_states_the_signature_and_hashes(run, exported):
  manifest = json.loads((exported / "manifest.json").read_text())
  loaded = genrec.load(run["dir"])
  assert manifest["format"] == "genrec-export-1" and manifest["k"] == 6 and manifest["batch"] == "symbolic"
  assert [i["name"] for i in manifest["inputs"]] == ["history", "seen"]
  assert manifest["inputs"][0]["shape"] == ["b", loaded.config.data.max_len]
  assert manifest["inputs"][1]["shape"] == ["b", "s"]
  assert manifest["items"] == loaded.dataset().item_raw
  for name, f in manifest["files"].items():
    blob = (exported / name).read_bytes()
    assert f == {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
  with np.load(exported / "params.npz", allow_pickle=False) as npz:  # plain arrays: no pickle needed
    assert sorted(npz.files) == sorted(manifest["params"])
    assert all(list(npz[n].shape) == manifest["params"][n]["shape"] for n in npz.files)


def test_export_checks_k_and_refuses_pointwise_models(run, tmp_path):
  code, _, err = runs.genrec_cli("export", run["dir"], "--out", tmp_path / "e", "--k", 0)
  assert code == 2 and "k must be between 1 and the" in err and "items of the catalogue, got 0" in err
  assert not (tmp_path / "e").exists()
  pointwise = types.SimpleNamespace(model=object(), config=types.SimpleNamespace(model_name="mf"))
  with pytest.raises(ValueError, match="mf is a pointwise model.*no recommender to export"):
    export_run(pointwise, tmp_path / "p")


def test_a_search_that_needs_a_static_seen_width_gets_a_fixed_one(run, tmp_path, monkeypatch):
  """TIGER's beam search sizes arrays by the width of `seen`: the export keeps the batch symbolic, pads `seen` to
  the longest history (recorded in the manifest) and still matches Run.recommend in a process without genrec."""
  loaded = genrec.load(run["dir"])
  data = loaded.dataset()
  model_cls = type(loaded.model)
  plain = model_cls.recommend

  def needs_static_width(self, batch, k):
    np.zeros(batch["seen"].shape[1])  # a shape used as a constant: an error on the symbol s
    return plain(self, batch, k)

  monkeypatch.setattr(model_cls, "recommend", needs_static_width)
  out = export_run(loaded, tmp_path / "e", k=4)
  monkeypatch.undo()
  manifest = json.loads((out / "manifest.json").read_text())
  longest = max(len(s) for s in data.sequences)
  assert manifest["batch"] == "symbolic" and manifest["inputs"][1]["shape"] == ["b", longest]
  assert len(manifest["symbolic_export_failed"]) == 1 and "'s'" in manifest["symbolic_export_failed"][0]
  history = lambda u: [data.item_raw[i] for i in data.sequences[u].tolist()]
  groups = [{data.user_raw[u]: history(u) for u in (2, 8)}]
  for user, got in consume(out, groups)["out"].items():
    assert got["items"] == [r["item"] for r in loaded.recommend(user, k=4)]


def test_tiger_exports_its_constrained_beam_search(tmp_path_factory, tmp_path):
  """TIGER's beam search (its per-user token and the constraint tables go in as inputs and parameters) exports
  with a symbolic batch and `seen` padded to the longest history; a process without genrec gets Run.recommend's
  items in batches of 3 and 1."""
  workdir = runs.tiger_run(tmp_path_factory)
  out = tmp_path / "tiger"
  code, stdout, err = runs.genrec_cli("export", workdir, "--out", out, "--k", 5)
  assert code == 0, err
  manifest = json.loads((out / "manifest.json").read_text())
  tiger = genrec.load(workdir)
  data = tiger.dataset()
  assert manifest["model"] == "tiger" and manifest["batch"] == "symbolic"
  assert [i["name"] for i in manifest["inputs"]] == ["history", "seen", "user"]
  assert manifest["inputs"][1]["shape"] == ["b", max(len(s) for s in data.sequences)]
  assert manifest["users"] == data.user_raw
  history = lambda u: [data.item_raw[i] for i in data.sequences[u].tolist()]
  groups = [{data.user_raw[u]: history(u) for u in (1, 4, 30)}, {data.user_raw[u]: history(u) for u in (9,)}]
  result = consume(out, groups)
  assert result["genrec"] is False and result["flax"] is False and len(result["out"]) == 4
  for user, got in result["out"].items():
    want = tiger.recommend(user, k=5)
    assert len(want) == 5 and got["items"] == [r["item"] for r in want]
    np.testing.assert_allclose(got["scores"], [r["score"] for r in want], rtol=1e-5, atol=1e-5)
