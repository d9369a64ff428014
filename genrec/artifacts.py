"""Run artifacts: the arrays a run leaves beside its checkpoints for other runs and tools to read. One format
serves every kind: a tokenizer's item -> semantic ID table ("semantic_ids"), an item encoder's fused item
embeddings ("item_embeddings"), a CF model's user and item tables ("cf"), and the items `genrec add-items`
added to a run ("added_items").

    RUN/artifacts/NAME.json                 {"format", "name", "version", "arrays": {KEY: {"file", "shape",
                                             "dtype", "sha256"}}, "meta": {...}}
    RUN/artifacts/NAME.KEY.<sha256[:16]>.npy  one plain .npy per array, read with allow_pickle=False

A write saves each array atomically under a name of its content, then the JSON atomically, then removes the
arrays of earlier writes: a reader sees one whole version, never a mix. `version` is the first 16 hex digits of
the sha256 of the arrays' bytes (in key order); consumers pin it (a TIGER model pins its semantic-ID table's).
A read checks every array against its sha256, shape and dtype, and refuses file names that leave the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from genrec.errors import ArtifactError
from genrec.files import as_path, atomic_write, inside

FORMAT = "genrec-artifact-1"
FOLDER = "artifacts"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Artifact:
  name: str
  version: str
  arrays: dict[str, np.ndarray]
  meta: dict

  def __getitem__(self, key: str) -> np.ndarray:
    return self.arrays[key]


def _digest(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def version_of(arrays: dict[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for key in sorted(arrays):
    h.update(np.ascontiguousarray(arrays[key]).tobytes())
  return h.hexdigest()[:16]


def folder(run_dir: str | Path) -> Path:
  return inside(run_dir, FOLDER, "artifact folder")


def exists(run_dir: str | Path, name: str) -> bool:
  return (as_path(run_dir) / FOLDER / f"{name}.json").is_file()


def write(run_dir: str | Path, name: str, arrays: dict[str, np.ndarray], meta: dict) -> dict:
  """Writes artifact `name` of a run; returns {"version", **meta} (what results.json records of it)."""
  if not _NAME.fullmatch(name) or not arrays or not all(_NAME.fullmatch(k) for k in arrays):
    raise ValueError(f"artifact {name!r} with arrays {sorted(arrays)}: names are lower-case identifiers")
  out = folder(run_dir)
  out.mkdir(parents=True, exist_ok=True)
  arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
  entries = {}
  for key, array in arrays.items():
    digest = _digest(array)
    file = f"{name}.{key}.{digest[:16]}.npy"
    if not (out / file).is_file():
      atomic_write(out / file, lambda f, a=array: np.save(f, a, allow_pickle=False))
    entries[key] = {"file": file, "shape": list(array.shape), "dtype": array.dtype.str, "sha256": digest}
  version = version_of(arrays)
  atomic_write(
    out / f"{name}.json",
    json.dumps({"format": FORMAT, "name": name, "version": version, "arrays": entries, "meta": meta}, indent=1),
  )
  current = {e["file"] for e in entries.values()}
  for old in out.glob(f"{name}.*.npy"):
    if old.name not in current and old.name.split(".")[0] == name:
      old.unlink(missing_ok=True)
  return {"version": version, **meta}


def read(run_dir: str | Path, name: str, *, what: str = "", hint: str = "") -> Artifact:
  """The artifact `name` of a run folder, every array checked against what its JSON records."""
  what = what or name.replace("_", " ")
  base = folder(run_dir)
  path = base / f"{name}.json"
  try:
    record = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ArtifactError(f"{run_dir} has no readable {what} ({e}){'; ' + hint if hint else ''}") from None
  if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("arrays"), dict):
    raise ArtifactError(
      f"{path}: not a {FORMAT} file (format {record.get('format') if isinstance(record, dict) else None!r})"
    )
  arrays = {}
  for key, entry in record["arrays"].items():
    file = entry.get("file", "") if isinstance(entry, dict) else ""
    if not re.fullmatch(rf"{name}\.{key}\.[0-9a-f]{{16}}\.npy", str(file)):
      raise ArtifactError(f"{path}: array {key!r} names the file {file!r}, not one of this artifact's")
    try:
      with inside(run_dir, base / file, "artifact file").open("rb") as f:  # a local path or a gs:// object
        array = np.load(f, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise ArtifactError(f"{what} in {base}: cannot read {file} ({e})") from None
    if (
      list(array.shape) != entry.get("shape")
      or array.dtype.str != entry.get("dtype")
      or _digest(array) != entry.get("sha256")
    ):
      raise ArtifactError(
        f"{what} in {base} does not match its recorded version ({file}: {array.dtype} "
        f"{list(array.shape)}, sha256 {_digest(array)[:16]}): the files were changed or mixed up"
      )
    arrays[key] = array
  if version_of(arrays) != record.get("version"):
    raise ArtifactError(
      f"{what} in {base} does not match its recorded version ({version_of(arrays)} vs "
      f"{record.get('version')}): the files were changed or mixed up"
    )
  return Artifact(name, record["version"], arrays, record.get("meta") or {})
