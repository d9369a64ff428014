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
max_len = manifest["inputs"][0]["shape"][1]
out = {}
for group in queries:  # users called together, one batch per group
  seen_width = max(len(h) for h in group.values())
  history = np.zeros((len(group), max_len), np.int32)
  seen = np.zeros((len(group), seen_width), np.int32)
  for row, items in enumerate(group.values()):
    ids = [item_id[raw] for raw in items]
    history[row, max_len - min(len(ids), max_len):] = ids[-max_len:]
    seen[row, :len(ids)] = ids
  top, scores = exported.call(params, history, seen)
  for row, user in enumerate(group):
    items = [manifest["items"][i] for i in np.asarray(top[row])]
    out[user] = {"items": items, "scores": np.asarray(scores[row]).tolist()}
print(json.dumps({"out": out, "genrec": "genrec" in sys.modules, "flax": "flax" in sys.modules}))
"""


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
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  proc = subprocess.run(
    [sys.executable, "-c", CONSUMER, str(exported), json.dumps(groups)],
    capture_output=True,
    text=True,
    env={**env, "JAX_PLATFORMS": "cpu"},
    timeout=300,
    cwd=exported,
  )
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
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
