"""Published runs: `genrec publish RUN OUT` writes a self-contained folder; `genrec.load(URI)` reads one from
wherever it lies.

A published folder:
  README.md       the model card: model, dataset, protocol, expected metrics, how to load and check it
  manifest.json   {"format": "genrec-published-1", "model", "preset", "step", "expected": results.json's
                  valid/test metrics, "files": {relative path: {"size", "sha256"}}}
  config.json, results.json
  best/STEP/      the kept checkpoint (parameters only, no optimizer state), with its own checkpoint manifest
  artifacts/      the run's artifacts (semantic-ID table, item embeddings, CF tables, added items)

URIs (`genrec.load`, `genrec eval`, `genrec recommend`, `--init-from`): a local folder; `https://HOST/PATH`
(PATH/manifest.json and the files it lists, beside it); `hf://ORG/NAME[@REVISION]` (the Hugging Face Hub's
resolve URLs under $HF_ENDPOINT, default https://huggingface.co; REVISION, default main, pins a branch, tag or
commit); `gs://BUCKET/PATH` (read through etils.epath, which needs gcsfs: genrec's [gcs] extra). A gs:// folder
without a manifest.json that holds a run (`genrec train --workdir gs://...`) is read in place, its checkpoints
checked by their own manifests. A published remote run is fetched once into
$GENREC_CACHE/hub/ (a file already there with the published sha256 is not fetched again); every file is
checked against the manifest's size and sha256 before anything reads it; an interrupted download resumes
from its .part file (HTTP Range). A local published folder is checked the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from genrec.errors import CheckpointError, ConfigError
from genrec.files import as_path, atomic_write, cache_root, inside, sha256

MANIFEST = "manifest.json"
FORMAT = "genrec-published-1"
REMOTE = ("http://", "https://", "hf://", "gs://")
RETRIES = 3
CHUNK = 1 << 18  # bytes per write while downloading


def is_remote(uri) -> bool:
  return str(uri).startswith(REMOTE)


# ---- publish --------------------------------------------------------------------------------------------------


def publish(workdir, out, *, step: int | None = None) -> Path:
  """Writes the self-contained folder `out` for run `workdir` (its best checkpoint, or `step` of it)."""
  workdir, out = Path(workdir), Path(out)
  results_path = workdir / "results.json"
  if not results_path.is_file():
    raise CheckpointError(f"{workdir} has no results.json: only a finished run (genrec train to the end) is published")
  if out.exists() and any(out.iterdir()):
    raise ConfigError(f"{out} exists and is not empty; publish into a new folder")
  best = workdir / "best"
  steps = sorted(int(p.name) for p in best.iterdir() if p.name.isdigit()) if best.is_dir() else []
  if not steps:
    raise CheckpointError(f"{workdir} has no kept checkpoint in best/ to publish")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise CheckpointError(f"{workdir}/best holds steps {steps}, not {step}")
  results = json.loads(results_path.read_text())
  tmp = out.with_name(f".{out.name}.partial")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  shutil.copytree(best / str(step), tmp / "best" / str(step), symlinks=False)
  if (workdir / "artifacts").is_dir():
    shutil.copytree(workdir / "artifacts", tmp / "artifacts", symlinks=False)
  for name in ("config.json", "results.json"):
    if (workdir / name).is_file():
      shutil.copy2(workdir / name, tmp / name)
  manifest = {
    "format": FORMAT,
    "model": results.get("model"),
    "preset": results.get("preset"),
    "step": step,
    "expected": {split: results.get(split, {}) for split in ("valid", "test")},
    "protocol": results.get("protocol", {}),
  }
  (tmp / "README.md").write_text(model_card(manifest, results))
  manifest["files"] = {
    str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256(p)}
    for p in sorted(tmp.rglob("*"))
    if p.is_file()
  }
  atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
  if out.exists():
    out.rmdir()
  out.parent.mkdir(parents=True, exist_ok=True)
  os.replace(tmp, out)  # a reader sees no folder or the whole one
  return out


def model_card(manifest: dict, results: dict) -> str:
  protocol = manifest["protocol"]
  name = f"{manifest['model']}:{manifest['preset']}"
  metrics = sorted(k for k, v in manifest["expected"]["test"].items() if isinstance(v, (int, float)))
  metrics = [k for k in metrics if k.split("@")[0] in ("recall", "ndcg", "mrr", "auc", "uauc", "hr")] or metrics
  rows = "\n".join(
    f"| {k} | {manifest['expected']['test'][k]:.4f} | {manifest['expected']['valid'].get(k, float('nan')):.4f} |"
    for k in metrics
  )
  return f"""# {name} on {protocol.get("dataset", "?")}

A genrec run: model `{manifest["model"]}`, preset `{manifest["preset"]}`, the checkpoint kept at step
{manifest["step"]} (of {results.get("steps")} trained) by its validation metric.
The full config is `config.json`; `manifest.json` lists the size and sha256 of every file, and `genrec.load`
checks them before it reads anything.

## Use

```python
import genrec
run = genrec.load("THIS_URI")           # a folder, https://..., hf://ORG/NAME@REVISION or gs://...
run.recommend(USER_ID, k=10)
```

```bash
genrec eval THIS_URI                    # recomputes the metrics below on your copy of the dataset
```

## Protocol

```json
{json.dumps(protocol, indent=1, sort_keys=True)}
```

## Expected metrics

`genrec eval` on this checkpoint reproduces these (same dataset files, same protocol):

| metric | test | valid |
|---|---|---|
{rows}
"""


# ---- fetch ----------------------------------------------------------------------------------------------------


def local(uri) -> Path:
  """The local folder of `uri`: a local path as it is (a published one verified), a remote one fetched."""
  text = str(uri)
  if not is_remote(text):
    path = Path(text).expanduser()
    if (path / MANIFEST).is_file():
      verify(path, read_manifest(path, text))
    return path
  folder = cache_root() / "hub" / hashlib.sha256(text.encode()).hexdigest()[:16]
  source = _source(text)
  try:
    manifest_bytes = source.read(MANIFEST)
  except CheckpointError as e:
    if isinstance(source, _Epath) and source.is_run():  # a training workdir on gs://: orbax reads it there
      return source.base
    if not (folder / MANIFEST).is_file():
      raise
    print(f"genrec: {e}; using the copy fetched before, in {folder}", file=sys.stderr)
    manifest = read_manifest(folder, text)
    verify(folder, manifest)
    return folder
  try:
    manifest = json.loads(manifest_bytes)
  except ValueError as e:
    raise CheckpointError(
      f"{text}: its {MANIFEST} is not JSON ({e}); is it a folder written by genrec publish?"
    ) from None
  check_format(manifest, text)
  folder.mkdir(parents=True, exist_ok=True)
  todo = []
  for rel, entry in manifest["files"].items():
    dest = inside(folder, rel, what=f"{MANIFEST} entry")
    if not (dest.is_file() and dest.stat().st_size == entry["size"] and sha256(dest) == entry["sha256"]):
      todo.append((rel, dest, entry))
  total = sum(e["size"] for _, _, e in todo)
  if todo:
    print(f"genrec: fetching {text} ({len(todo)} files, {total / 2**20:.1f} MiB) into {folder}", file=sys.stderr)
  for rel, dest, entry in todo:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source.fetch(rel, dest, entry)
  atomic_write(folder / MANIFEST, manifest_bytes)  # last: a folder with a manifest is complete and checked
  return folder


def read_manifest(folder: Path, uri: str) -> dict:
  try:
    manifest = json.loads((folder / MANIFEST).read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{uri}: its {MANIFEST} is unreadable ({e})") from None
  check_format(manifest, uri)
  return manifest


def check_format(manifest, uri: str) -> None:
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
    raise CheckpointError(f"{uri}: {MANIFEST} is not a genrec publish manifest (format {FORMAT!r} with 'files')")


def verify(folder: Path, manifest: dict) -> None:
  """Every file the manifest lists is inside `folder` with its published size and sha256."""
  for rel, entry in manifest["files"].items():
    path = inside(folder, rel, what=f"{MANIFEST} entry")
    if not path.is_file():
      raise CheckpointError(f"{folder}: {rel} is missing (listed in {MANIFEST})")
    if path.stat().st_size != entry["size"] or sha256(path) != entry["sha256"]:
      raise CheckpointError(f"{folder}: {rel} does not match its published size and sha256 ({MANIFEST})")


class _HTTP:
  """Files under a base URL, fetched with requests: resumable (Range), retried, checked."""

  def __init__(self, base: str, uri: str):
    self.base, self.uri = base.rstrip("/") + "/", uri

  def _get(self, rel: str, headers=None):
    import requests

    url = self.base + rel
    try:
      response = requests.get(url, headers=headers or {}, stream=True, timeout=60)
    except requests.RequestException as e:
      raise CheckpointError(
        f"{self.uri}: cannot reach {url} ({type(e).__name__}); check the address and network"
      ) from None
    if response.status_code not in (200, 206):
      response.close()
      hint = "; is it a folder written by genrec publish?" if rel == MANIFEST else ""
      raise CheckpointError(f"{self.uri}: {url} answered HTTP {response.status_code}{hint}")
    return response

  def read(self, rel: str) -> bytes:
    with self._get(rel) as response:
      return response.content

  def fetch(self, rel: str, dest: Path, entry: dict) -> None:
    import requests

    part = dest.with_name(dest.name + ".part")
    for attempt in range(RETRIES):
      have = part.stat().st_size if part.exists() else 0
      if have > entry["size"]:
        part.unlink()
        have = 0
      if have < entry["size"]:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
          with self._get(rel, headers) as response:
            mode = "ab" if response.status_code == 206 else "wb"  # a server without Range support sends it all
            with part.open(mode) as f:
              for block in response.iter_content(CHUNK):  # a break loses at most the chunk in flight
                f.write(block)
        except (requests.RequestException, OSError) as e:
          if attempt == RETRIES - 1:
            raise CheckpointError(
              f"{self.uri}: the download of {rel} broke off {RETRIES} times ({type(e).__name__}); "
              f"run again to resume from the {part.stat().st_size if part.exists() else 0} bytes kept"
            ) from None
          continue
      _finish(part, dest, rel, entry, self.uri)
      return


def _finish(part: Path, dest: Path, rel: str, entry: dict, uri: str) -> None:
  if part.stat().st_size != entry["size"] or sha256(part) != entry["sha256"]:
    part.unlink()
    raise CheckpointError(
      f"{uri}: the downloaded {rel} does not match its published size and sha256; removed it (run again, or "
      "ask the publisher whether the folder changed)"
    )
  os.replace(part, dest)


class _Epath:
  """Files under a gs:// (or other etils.epath) folder."""

  def __init__(self, base: str, uri: str):
    self.base, self.uri = as_path(base), uri

  def is_run(self) -> bool:
    try:
      return (self.base / "best").is_dir() or (self.base / "checkpoints").is_dir()
    except Exception:  # noqa: BLE001 (as in read: an unreadable folder is not a run)
      return False

  def read(self, rel: str) -> bytes:
    try:
      return (self.base / rel).read_bytes()
    except FileNotFoundError:
      scheme, _, rest = self.uri.partition("://")
      bucket = f"{scheme}://{rest.split('/', 1)[0]}"
      if not _exists(bucket):
        raise CheckpointError(f"{self.uri}: the bucket {bucket} does not exist (or is not readable)") from None
      if rel == MANIFEST:
        raise CheckpointError(
          f"{self.uri}: manifest.json is not there: not a published run (manifest.json), nor a run folder "
          "(best/, checkpoints/)"
        ) from None
      raise CheckpointError(f"{self.uri}: {rel} is not there") from None
    except Exception as e:  # noqa: BLE001 (gcsfs, auth and network errors all mean: cannot read)
      raise CheckpointError(f"{self.uri}: cannot read {rel} ({type(e).__name__}: {e})") from None

  def fetch(self, rel: str, dest: Path, entry: dict) -> None:
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(self.read(rel))
    _finish(part, dest, rel, entry, self.uri)


def _exists(uri: str) -> bool:
  try:
    return as_path(uri).exists()
  except Exception:  # noqa: BLE001
    return False


def _source(uri: str):
  if uri.startswith(("http://", "https://")):
    return _HTTP(uri, uri)
  if uri.startswith("hf://"):
    repo, _, revision = uri[len("hf://") :].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
      raise ConfigError(f"{uri}: a Hub URI is hf://ORG/NAME or hf://ORG/NAME@REVISION")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return _HTTP(f"{endpoint}/{repo}/resolve/{revision or 'main'}", uri)
  return _Epath(uri, uri)
