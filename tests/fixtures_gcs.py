"""An in-memory Google Cloud Storage on loopback (gcp-storage-emulator) for the gs:// tests, one per session:
etils.epath (through gcsfs), orbax's tensorstore and tensorboardX (google-cloud-storage) all reach it through
their emulator settings, so no test touches the internet or needs credentials. Skipped, saying why, where the
packages (the `test` extra) are missing."""

from __future__ import annotations

import gc
import logging
import socket
from pathlib import Path

import pytest

BUCKET = "bucket"


class Emulator:
  def __init__(self, url: str):
    self.url = url

  def upload(self, folder: Path, uri: str) -> str:
    """Copies the local `folder` to gs:// `uri`, file by file; returns the uri."""
    from genrec.files import copy_up

    copy_up(folder, uri)
    return uri


def _with_generation_headers(server_module) -> None:
  """The emulator's media downloads lack the x-goog-generation header real GCS sends. tensorstore (orbax's OCDBT
  checkpoints) then caches a manifest it read without a generation and fails its next conditional write of it
  ("Malformed StorageGeneration"), now and then. Every media GET gets the header added."""

  def with_header(handler):
    def get(request, response, storage, *args, **kwargs):
      handler(request, response, storage, *args, **kwargs)
      media = "alt" in request.query or "download" in request.full_url or "/o/" not in request.full_url
      if media and response.status.value in (200, 206) and "object_id" in request.params:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))

    return get

  for _, methods in server_module.HANDLERS:
    if "GET" in methods:
      methods["GET"] = with_header(methods["GET"])


@pytest.fixture(scope="session")
def gcs():
  pytest.importorskip("gcsfs", reason="the gs:// tests need gcsfs (genrec's [test] or [gcs] extra)")
  emulator = pytest.importorskip(
    "gcp_storage_emulator.server", reason="the gs:// tests need gcp-storage-emulator (genrec's [test] extra)"
  )
  _with_generation_headers(emulator)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f"http://127.0.0.1:{port}"
  mp = pytest.MonkeyPatch()
  mp.setenv("STORAGE_EMULATOR_HOST", url)  # gcsfs and google-cloud-storage
  mp.setenv("TENSORSTORE_GCS_HTTP_URL", url)  # orbax's array files
  mp.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # tensorstore: no credentials lookup
  # gcsfs logs a warning per call that finds no Application Default Credentials (none are needed here).
  mp.setattr(logging.getLogger("gcsfs"), "level", logging.ERROR)
  try:
    yield Emulator(url)
  finally:
    gc.collect()  # tensorboardX's GCS writers upload again when collected: while the emulator still answers
    server.stop()
    mp.undo()
