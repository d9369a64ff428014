"""Small file helpers shared by every writer and reader of run folders: atomic writes, contained paths and the
cache root."""

from __future__ import annotations

import hashlib
import os
import re
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
  with Path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def local_run_folder(folder: str | os.PathLike, flag: str = "--workdir") -> Path:
  """The folder a run trains into, as a local path. A URI (gs://BUCKET/RUN, s3://, https://...) is refused
  before any work: pathlib would make it a local folder named "gs:", and the run folder needs what object
  stores lack (an flock lock, appends to metrics.jsonl, atomic renames, symlink checks on checkpoints)."""
  text = os.fspath(folder)
  scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
  if scheme:
    raise ConfigError(
      f"{flag} {text}: training into a remote ({scheme.group(1)}://) folder is not supported; a run folder "
      "must be local (its lock is an flock, metrics.jsonl is appended to, results and artifacts are written "
      "by an atomic rename). Train into a local folder, then copy it or `genrec publish` it to the bucket: "
      "genrec.load, genrec eval, genrec recommend and --init-from read gs:// URIs"
    )
  return Path(folder)


class PathEscapeError(ValueError):
  """A path that should lie inside a run folder resolves outside it (a symlink or `..` planted in the run)."""


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
  """Writes `content` (text, bytes, or a function writing to a binary file) to `path` through a temporary
  sibling and a rename: a reader sees the old file or the new one, never half of one."""
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
  root = Path(root)
  full = path if Path(path).is_absolute() else root / path
  if not Path(full).resolve().is_relative_to(root.resolve()):
    raise PathEscapeError(
      f"{what} {full} resolves to {Path(full).resolve()}, outside the run folder {root}; refusing to read or write it"
    )
  return Path(full)
