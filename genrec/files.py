"""Small file helpers shared by every writer and reader of run folders: atomic writes, contained paths and the
cache root."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from genrec.errors import ConfigError


def cache_root() -> Path:
  """Where stages, embeddings and images are cached: $GENREC_CACHE, default ~/.cache/genrec."""
  return Path(os.environ.get("GENREC_CACHE", "~/.cache/genrec")).expanduser()


def sha256(path: str | os.PathLike) -> str:
  """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with as_path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
RUN_SCHEMES = ("gs",)  # remote run folders genrec trains into (tested against a GCS emulator)


def is_remote(path: str | os.PathLike) -> bool:
  """A URI (gs://BUCKET/PATH, ...), not a local path."""
  return _SCHEME.match(os.fspath(path)) is not None


def as_path(path: str | os.PathLike):
  """A local path as a pathlib.Path; a gs:// URI as an etils.epath.Path (read and written through gcsfs), which
  pathlib would turn into a local folder named "gs:"."""
  if not is_remote(path):
    return Path(path)
  from genrec import extras

  extras.need("gcsfs", "gs:// folders")
  from etils import epath

  return epath.Path(os.fspath(path))


def run_folder(folder: str | os.PathLike, flag: str = "--workdir"):
  """The folder a run trains into: a local path, or a gs://BUCKET/RUN URI (an epath.Path: orbax writes the
  checkpoints there, and the run's lock, logs and atomic writes take their object-store forms). Other schemes
  are refused before any work."""
  text = os.fspath(folder)
  scheme = _SCHEME.match(text)
  if scheme and scheme.group(1) not in RUN_SCHEMES:
    raise ConfigError(
      f"{flag} {text}: {scheme.group(1)}:// run folders are not supported; a run folder is local or "
      "gs://BUCKET/PATH. Train into one of those, then copy it or `genrec publish` it where it should go"
    )
  return as_path(folder)


def size(path) -> int:
  """A file's size in bytes (pathlib's st_size; epath's stat calls it length)."""
  stat = path.stat()
  return stat.st_size if hasattr(stat, "st_size") else stat.length


def tree(folder) -> list:
  """Every file under `folder`, sorted (an object store lists by prefix; epath has no recursive glob there)."""
  if not is_remote(folder):
    return [p for p in sorted(Path(folder).rglob("*")) if p.is_file()]
  out = []
  for entry in sorted(as_path(folder).iterdir()):
    out += tree(entry) if entry.is_dir() else [entry]
  return out


def copy_up(folder: str | os.PathLike, dest) -> None:
  """Copies every file under the local `folder` to the same place under `dest` (a local path or gs://)."""
  dest = as_path(dest)
  for path in tree(folder):
    target = dest / str(path.relative_to(folder))
    if not is_remote(target):
      target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, path.read_bytes())


def remove(path) -> None:
  """Removes a file or a folder tree, if there."""
  path = as_path(path)
  if not is_remote(path):
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
  elif path.is_dir():
    path.rmtree(missing_ok=True)
  else:
    path.unlink(missing_ok=True)


class PathEscapeError(ValueError):
  """A path that should lie inside a run folder resolves outside it (a symlink or `..` planted in the run)."""


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
  """Writes `content` (text, bytes, or a function writing to a binary file) to `path` through a temporary
  sibling and a rename: a reader sees the old file or the new one, never half of one. On an object store
  (gs://) one object's write is already atomic, so it is written directly."""
  if is_remote(path):
    path = as_path(path)
    with path.open("wb") as f:
      content(f) if callable(content) else f.write(content.encode() if isinstance(content, str) else content)
    return path
  path = Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      if callable(content):
        content(f)
      else:
        f.write(content.encode() if isinstance(content, str) else content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    Path(tmp).unlink(missing_ok=True)
  return path


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "artifact") -> Path:
  """`path` (absolute, or relative to `root`) after checking that it resolves inside `root`."""
  if is_remote(root):
    return _inside_remote(root, path, what)
  root = Path(root)
  full = path if Path(path).is_absolute() else root / path
  if not Path(full).resolve().is_relative_to(root.resolve()):
    raise PathEscapeError(
      f"{what} {full} resolves to {Path(full).resolve()}, outside the run folder {root}; refusing to read or write it"
    )
  return Path(full)


def outside(root, rel: str) -> bool:
  """Whether ROOT/rel lies outside `root`: resolved through links on a local disk; by its parts on an object
  store, which has no links."""
  if is_remote(root):
    return posixpath.isabs(rel) or is_remote(rel) or posixpath.normpath(rel).split("/")[0] == ".."
  return Path(rel).is_absolute() or not (Path(root) / rel).resolve().is_relative_to(Path(root).resolve())


def _inside_remote(root, path, what: str):
  root, text = as_path(root), os.fspath(path)
  prefix = os.fspath(root).rstrip("/") + "/"
  rel = text[len(prefix) :] if text.startswith(prefix) else text
  if outside(root, rel):
    raise PathEscapeError(f"{what} {text} lies outside the run folder {root}; refusing to read or write it")
  return root / rel
