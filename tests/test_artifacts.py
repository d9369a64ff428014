"""The one artifact format (genrec.artifacts): round trip, content version, atomic rewrites, tamper and escape
checks."""

import hashlib
import json
import os

import numpy as np
import pytest

from genrec import artifacts
from genrec.errors import ArtifactError
from genrec.files import PathEscapeError


def test_round_trip_and_the_version_is_the_sha256_of_the_arrays(tmp_path):
  codes = np.arange(12, dtype=np.int32).reshape(4, 3)
  written = artifacts.write(tmp_path, "semantic_ids", {"codes": codes}, {"items": 3, "stats": {"usage": [1.0]}})
  assert written == {"version": hashlib.sha256(codes.tobytes()).hexdigest()[:16], "items": 3, "stats": {"usage": [1.0]}}
  found = artifacts.read(tmp_path, "semantic_ids")
  np.testing.assert_array_equal(found["codes"], codes)
  assert found["codes"].dtype == np.int32 and found.version == written["version"] and found.meta["items"] == 3
  two = {"users": np.ones((2, 4), np.float32), "items": np.zeros((3, 4), np.float32)}
  version = artifacts.write(tmp_path, "cf", two, {})["version"]
  expected = hashlib.sha256(two["items"].tobytes() + two["users"].tobytes()).hexdigest()[:16]  # key order
  assert version == expected and artifacts.exists(tmp_path, "cf") and not artifacts.exists(tmp_path, "other")


def test_a_rewrite_replaces_the_arrays_and_leaves_no_stale_file(tmp_path):
  artifacts.write(tmp_path, "added_items", {"codes": np.zeros((1, 2), np.int32)}, {"revision": 1})
  artifacts.write(tmp_path, "added_items", {"codes": np.ones((2, 2), np.int32)}, {"revision": 2})
  files = sorted(p.name for p in (tmp_path / "artifacts").iterdir())
  assert (
    len(files) == 2
    and files[0] == "added_items.codes." + hashlib.sha256(np.ones((2, 2), np.int32).tobytes()).hexdigest()[:16] + ".npy"
  )
  assert artifacts.read(tmp_path, "added_items").meta == {"revision": 2}


def test_changed_missing_or_foreign_files_are_refused(tmp_path):
  artifacts.write(tmp_path, "item_embeddings", {"embeddings": np.eye(3, dtype=np.float32)}, {})
  record_path = tmp_path / "artifacts" / "item_embeddings.json"
  record = json.loads(record_path.read_text())
  array = tmp_path / "artifacts" / record["arrays"]["embeddings"]["file"]
  np.save(array, 2 * np.eye(3, dtype=np.float32))
  with pytest.raises(ArtifactError, match="does not match its recorded version"):
    artifacts.read(tmp_path, "item_embeddings")
  array.unlink()
  with pytest.raises(ArtifactError, match="cannot read item_embeddings.embeddings"):
    artifacts.read(tmp_path, "item_embeddings")
  for file in ("../../../etc/passwd", "/etc/passwd", "cf.users.0123456789abcdef.npy"):
    record["arrays"]["embeddings"]["file"] = file
    record_path.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="not one of this artifact's"):
      artifacts.read(tmp_path, "item_embeddings")
  with pytest.raises(ArtifactError, match="has no readable semantic ids"):
    artifacts.read(tmp_path, "semantic_ids")


def test_a_folder_linking_out_of_the_run_is_refused(tmp_path):
  artifacts.write(tmp_path / "a", "cf", {"users": np.ones((1, 1), np.float32)}, {})
  (tmp_path / "b").mkdir()
  os.symlink(tmp_path / "a" / "artifacts", tmp_path / "b" / "artifacts")
  with pytest.raises(PathEscapeError, match="outside the run folder"):
    artifacts.read(tmp_path / "b", "cf")


def test_pickled_arrays_are_never_loaded(tmp_path):
  artifacts.write(tmp_path, "cf", {"users": np.ones((1, 1), np.float32)}, {})
  (array,) = (tmp_path / "artifacts").glob("cf.users.*.npy")
  np.save(array, np.array([{"x": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ArtifactError, match="cannot read cf.users.*allow_pickle"):
    artifacts.read(tmp_path, "cf")
