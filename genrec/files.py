"""Small file helpers shared by every writer and reader of run folders: atomic writes, contained paths and the
cache root."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
