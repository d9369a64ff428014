"""Item images downloaded once into a cache folder: `$GENREC_CACHE/images/<dataset>/<sha1 of the url><ext>`.

`cache_images(urls, dataset)` fetches every URL not yet cached with a small thread pool (`workers` connections
at most, a timeout per request, one retry after a pause on HTTP 429/5xx or a network error), checks that the
bytes decode as an image (`genrec.data.images.decode`) and writes them atomically. It never raises for a bad
image or a network problem; each entry is counted as one of
  ok          a decodable image is in the cache (its path is returned)
  missing     the server answered 404/410
  broken      the bytes are not a readable image, or exceed `max_bytes`
  failed      network error, timeout or another HTTP status (tried again by the next call)
  no_url      the entry has no URL
  not_cached  offline, and nothing is known about the URL
Missing and broken answers are remembered (`<sha1>.missing` / `<sha1>.broken` markers), so a second call makes
no request for them either; delete the folder to ask again. `offline=True` makes no request at all. Nothing is
downloaded unless this function is called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests

from genrec.data.errors import DataError
from genrec.data.images import ImageError, decode
from genrec.files import atomic_write, cache_root

COUNTS = ("ok", "missing", "broken", "failed", "no_url", "not_cached")
SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
USER_AGENT = "genrec-image-cache/1.0 (one request per image, cached)"
MAX_BYTES = 20 * 2**20


@dataclasses.dataclass
class CachedImages:
  paths: list[str | None]  # per entry: the cached file, or None
  counts: dict[str, int]  # per entry, one of COUNTS
  errors: list[str]  # "URL: status (why)" per entry that is not ok, in input order
  requests: int  # HTTP requests this call made


def cache_folder(dataset: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """`cache_dir`/`dataset` (default `$GENREC_CACHE/images`, `$GENREC_CACHE` defaulting to ~/.cache/genrec)."""
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dataset):
    raise DataError(f"image cache: dataset name {dataset!r} cannot name a folder (use letters, digits, '.', '_', '-')")
  root = Path(cache_dir) if cache_dir else cache_root() / "images"
  return root.expanduser() / dataset


def cache_path(folder: Path, url: str) -> Path:
  suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
  return folder / (hashlib.sha1(url.encode()).hexdigest() + (suffix if suffix in SUFFIXES else ".jpg"))


def _known(path: Path) -> tuple[str, str] | None:
  """(status, why) the cache holds for this URL's file, or None."""
  if path.exists():
    return "ok", ""
  for status in ("missing", "broken"):
    marker = path.with_suffix(f".{status}")
    if marker.exists():
      return status, marker.read_text().strip() + " (remembered)"
  return None


def _remember(path: Path, status: str, why: str) -> tuple[str, str]:
  atomic_write(path.with_suffix(f".{status}"), why)
  return status, why


def _download(url: str, limit: int, timeout) -> tuple[int, bytes | None]:
  """(HTTP status, body or None when over `limit` bytes)."""
  with requests.get(url, timeout=timeout, stream=True, headers={"User-Agent": USER_AGENT}) as r:
    if r.status_code != 200:
      return r.status_code, b""
    if int(r.headers.get("Content-Length") or 0) > limit:
      return 200, None
    body = bytearray()
    for chunk in r.iter_content(1 << 16):
      body += chunk
      if len(body) > limit:
        return 200, None
    return 200, bytes(body)


def _fetch(url: str, path: Path, *, timeout, retries: int, backoff: float, limit: int) -> tuple[str, str, int]:
  """(status, why, requests made) for one URL; writes the image or a marker."""
  why = ""
  for attempt in range(retries + 1):
    if attempt:
      time.sleep(backoff * attempt)
    try:
      status, body = _download(url, limit, timeout)
    except (requests.RequestException, OSError) as e:
      why = f"{type(e).__name__}: {e}"
      continue
    if status in (404, 410):
      return (*_remember(path, "missing", f"HTTP {status}"), attempt + 1)
    if status != 200:
      why = f"HTTP {status}"
      if status == 429 or status >= 500:
        continue
      return "failed", why, attempt + 1
    if body is None:
      return (*_remember(path, "broken", f"larger than {limit} bytes"), attempt + 1)
    try:
      decode(body, name=url)
    except ImageError as e:
      return (*_remember(path, "broken", str(e)), attempt + 1)
    atomic_write(path, body)
    return "ok", "", attempt + 1
  return "failed", why, retries + 1


def cache_images(
  urls: Sequence[str | None],
  dataset: str,
  *,
  cache_dir: str | os.PathLike | None = None,
  offline: bool = False,
  workers: int = 4,
  timeout: tuple[float, float] = (10.0, 30.0),
  retries: int = 1,
  backoff: float = 2.0,
  max_bytes: int = MAX_BYTES,
  progress: bool = True,
) -> CachedImages:
  """The cached file of each URL (None where there is none), fetching what the cache lacks unless `offline`.
  Repeated URLs are fetched once. Never raises for an image or network problem (see the module docstring)."""
  folder = cache_folder(dataset, cache_dir)
  urls = ["" if u is None else str(u).strip() for u in urls]
  result: dict[str, tuple[str, str]] = {}
  todo = []
  for url in dict.fromkeys(u for u in urls if u):
    known = _known(cache_path(folder, url))
    if known is not None:
      result[url] = known
    elif offline:
      result[url] = ("not_cached", "not in the image cache, and offline")
    else:
      todo.append(url)
  made = 0
  if todo:
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"images of {dataset}", unit="img", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 16)), thread_name_prefix="genrec-images") as pool:
      jobs = {
        pool.submit(
          _fetch, url, cache_path(folder, url), timeout=timeout, retries=retries, backoff=backoff, limit=max_bytes
        ): url
        for url in todo
      }
      for job in as_completed(jobs):
        status, why, n = job.result()
        result[jobs[job]] = (status, why)
        made += n
        bar.update(1)
    bar.close()
  paths, counts, errors = [], dict.fromkeys(COUNTS, 0), []
  for url in urls:
    status, why = result[url] if url else ("no_url", "")
    counts[status] += 1
    paths.append(str(cache_path(folder, url)) if status == "ok" else None)
    if status not in ("ok", "no_url"):
      errors.append(f"{url}: {status} ({why})")
  return CachedImages(paths=paths, counts=counts, errors=errors, requests=made)
