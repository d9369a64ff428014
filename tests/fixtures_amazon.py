"""Amazon 2014 fixture helpers shared by tests/data/test_amazon.py and tests/train/test_mmenc_amazon.py: files in
the UCSD formats and a local HTTP server for reviews and item images. Import the `server` fixture by name."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from fixtures_http import serve


def write_gz(path, lines: list) -> str:
  """A gzip file of one line per entry: strings as they are, dicts as Python literals (the meta format)."""
  with gzip.open(path, "wt", encoding="utf-8") as f:
    for line in lines:
      f.write((line if isinstance(line, str) else repr(line)) + "\n")
  return str(path)


def review_lines(reviews) -> list[str]:
  """JSON review lines from (reviewerID, asin, overall, unixReviewTime) tuples."""
  return [
    json.dumps(
      {
        "reviewerID": u,
        "asin": a,
        "reviewerName": "x",
        "helpful": [0, 0],
        "reviewText": "ok",
        "overall": r,
        "summary": "s",
        "unixReviewTime": t,
        "reviewTime": "01 1, 2014",
      }
    )
    for u, a, r, t in reviews
  ]


def png(seed: int, shape=(6, 5, 3)) -> tuple[bytes, np.ndarray]:
  """(PNG bytes, their RGB pixels) of random pixels drawn by `seed`."""
  pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="PNG")
  return buf.getvalue(), pixels


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """Serves srv/ (img/1.png..3.png, img/bad.jpg that is not a JPEG, and whatever a test writes there); /img/slow
  stalls, /img/err500 fails, anything absent is a 404; counts every request by path."""
  srv = tmp_path_factory.mktemp("srv")
  (srv / "img").mkdir()
  images = {name: png(k) for k, name in enumerate(("1.png", "2.png", "3.png"))}
  for name, (data, _) in images.items():
    (srv / "img" / name).write_bytes(data)
  (srv / "img" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  hits: list[str] = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

    def do_GET(self):
      hits.append(self.path)
      if self.path == "/img/slow.png":
        time.sleep(3.0)  # the client has given up by now: answering would only hit a closed socket
        return
      if self.path == "/img/err500.png":
        self.send_error(500)
        return
      super().do_GET()

    def do_HEAD(self):
      hits.append("HEAD " + self.path)
      super().do_HEAD()

  with serve(srv, Handler) as (port, _):
    yield {
      "dir": srv,
      "port": port,
      "url": f"http://127.0.0.1:{port}",
      "hits": hits,
      "images": {name: pixels for name, (_, pixels) in images.items()},
    }
