"""A local HTTP server for download tests: serves a folder on 127.0.0.1 with proxies bypassed."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading

import pytest


@contextlib.contextmanager
def serve(directory, handler=http.server.SimpleHTTPRequestHandler):
  """Serves `directory` with `handler` (a SimpleHTTPRequestHandler subclass) on a free port, in a thread, with
  NO_PROXY covering localhost; yields (port, a MonkeyPatch the caller may use for more patches)."""
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
  threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
  try:
    with pytest.MonkeyPatch.context() as mp:
      mp.setenv("NO_PROXY", "127.0.0.1,localhost")
      mp.setenv("no_proxy", "127.0.0.1,localhost")
      yield httpd.server_port, mp
  finally:
    httpd.shutdown()
