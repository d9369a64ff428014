"""One writer per folder: an exclusive lock on FOLDER/.genrec-lock, held by the process that trains in it.

    with locks.hold(workdir, "genrec train sasrec:ml100k"):
      ...

The lock is `flock` on the file (released by the kernel when the holder dies, so a lock left by a killed
process is simply taken over; the file also records who held it, so the next holder can say so). Another live
process waits (and says whom it waits for) or, with wait=False, gets a LockedError naming the holder. Re-entrant
within one process: a pipeline that holds a stage folder may start the stage's trainer, which takes it again.
Folders on object stores (gs://...) are not locked (flock needs a local or NFS file system): acquire says so,
once per folder and process, and one job per remote workdir is the caller's to keep.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from genrec.errors import ConfigError, LockedError

LOCK_NAME = ".genrec-lock"

_held: dict[str, list] = {}  # resolved folder -> [file object, depth]
_told: set[str] = set()  # remote folders acquire has said it does not lock
_mutex = threading.Lock()


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _read_holder(f) -> dict:
  f.seek(0)
  try:
    return json.loads(f.read() or "{}")
  except ValueError:
    return {}


def _describe(holder: dict) -> str:
  if not holder:
    return "another process"
  what = holder.get("what") or "genrec"
  return f"pid {holder.get('pid')} on {holder.get('host')} ({what}, since {holder.get('since')})"


def _folder(folder) -> Path | None:
  if "://" in str(folder):
    return None
  folder = Path(folder).expanduser()
  if folder.exists() and not folder.is_dir():
    raise ConfigError(f"{folder} is a file, not a folder; pass a folder path (e.g. --workdir runs/NAME)")
  return folder


def acquire(folder, what: str = "", *, wait: bool = True) -> None:
  """Takes FOLDER's lock (creating the folder), waiting for a live holder unless wait=False."""
  path = _folder(folder)
  if path is None:
    if str(folder) not in _told:
      _told.add(str(folder))
      print(
        f"genrec: {folder} is not locked (an object store has no flock): run one genrec train at a time in it",
        file=sys.stderr,
        flush=True,
      )
    return
  path.mkdir(parents=True, exist_ok=True)
  key = str(path.resolve())
  with _mutex:
    if key in _held:
      _held[key][1] += 1
      return
  f = open(path / LOCK_NAME, "a+")  # noqa: SIM115 (kept open while held)
  try:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(f)
      if not wait:
        raise LockedError(
          f"{path} is in use by {_describe(holder)}; wait for it to finish, or use another folder"
        ) from None
      print(f"genrec: waiting for {path}: it is in use by {_describe(holder)}", file=sys.stderr, flush=True)
      fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    previous = _read_holder(f)
    if previous.get("pid") and previous.get("host") == socket.gethostname() and not _alive(int(previous["pid"])):
      print(
        f"genrec: taking over {path}: its last holder (pid {previous['pid']}, {previous.get('what') or 'genrec'}) "
        "died without releasing it",
        file=sys.stderr,
        flush=True,
      )
    f.seek(0)
    f.truncate()
    holder = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "what": what,
      "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    f.write(json.dumps(holder))
    f.flush()
  except BaseException:
    f.close()
    raise
  with _mutex:
    _held[key] = [f, 1]


def release(folder) -> None:
  """Releases one hold of FOLDER's lock (the lock itself when the outermost hold ends)."""
  path = _folder(folder)
  if path is None:
    return
  key = str(path.resolve())
  with _mutex:
    entry = _held.get(key)
    if entry is None:
      return
    entry[1] -= 1
    if entry[1] > 0:
      return
    del _held[key]
  f = entry[0]
  f.seek(0)
  f.truncate()  # an empty file: released cleanly, nobody to take over from
  f.flush()
  fcntl.flock(f.fileno(), fcntl.LOCK_UN)
  f.close()


def remove_if_unused(folder) -> None:
  """Removes FOLDER when it holds nothing but a released lock file (a run refused before it wrote anything)."""
  path = _folder(folder)
  if path is None or held(path) or not path.is_dir():
    return
  if [p.name for p in path.iterdir()] == [LOCK_NAME]:
    (path / LOCK_NAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
      path.rmdir()


def held(folder) -> bool:
  path = _folder(folder)
  return path is not None and str(path.resolve()) in _held


@contextlib.contextmanager
def hold(folder, what: str = "", *, wait: bool = True):
  acquire(folder, what, wait=wait)
  try:
    yield
  finally:
    release(folder)
