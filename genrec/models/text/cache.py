"""Embedding cache: one .npy per (encoder identity, list of texts), verified before it is trusted.

Layout: `DIR/<key>.npy` (float32 [N, D], written with np.save, read with allow_pickle=False) and
`DIR/<key>.npy.sha256` (the digest of the .npy bytes). Writes are atomic (temporary file + os.replace), so a
reader sees a whole file or none; a file whose digest, shape, dtype or values are wrong is recomputed, never
returned. DIR defaults to $GENREC_EMBEDDING_CACHE or ~/.cache/genrec/embeddings.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from genrec.files import atomic_write

DEFAULT_DIR = "~/.cache/genrec/embeddings"
ENV_VAR = "GENREC_EMBEDDING_CACHE"


def default_dir() -> Path:
  return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


def texts_digest(texts: Sequence[str]) -> str:
  """sha256 of the texts in order (each length-prefixed, so ["ab", "c"] ≠ ["a", "bc"])."""
  h = hashlib.sha256(str(len(texts)).encode())
  for text in texts:
    data = text.encode("utf-8")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)
  return h.hexdigest()


def cache_key(encoder_identity: str, texts: Sequence[str]) -> str:
  return hashlib.sha256(f"{encoder_identity}\n{texts_digest(texts)}".encode()).hexdigest()[:40]


class EmbeddingCache:
  def __init__(self, directory: str | os.PathLike | None = None):
    self.directory = Path(directory).expanduser() if directory is not None else default_dir()

  def path(self, key: str) -> Path:
    return self.directory / f"{key}.npy"

  def load(self, key: str, num_rows: int) -> np.ndarray | None:
    """The cached [num_rows, D] float32 array, or None when absent or not intact."""
    path = self.path(key)
    if not path.exists():
      return None
    try:
      data = path.read_bytes()
      digest = Path(f"{path}.sha256").read_text().strip()
      if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError("digest mismatch")
      array = np.load(io.BytesIO(data), allow_pickle=False)
      if array.ndim != 2 or array.shape[0] != num_rows or array.dtype != np.float32:
        raise ValueError(f"holds {array.dtype}{list(array.shape)}, expected float32[{num_rows}, D]")
      if not np.isfinite(array).all():
        raise ValueError("holds NaN/Inf")
    except (OSError, ValueError, EOFError) as e:
      warnings.warn(f"embedding cache file {path} is not intact ({e}); recomputing", stacklevel=3)
      return None
    return array

  def save(self, key: str, array: np.ndarray):
    self.directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, np.float32), allow_pickle=False)
    data = buf.getvalue()
    path = self.path(key)
    atomic_write(path, data)
    atomic_write(Path(f"{path}.sha256"), hashlib.sha256(data).hexdigest().encode())

  def get_or_compute(self, key: str, num_rows: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The cached array if intact, else `compute()` (saved for next time)."""
    array = self.load(key, num_rows)
    if array is None:
      array = np.asarray(compute(), np.float32)
      self.save(key, array)
    return array
