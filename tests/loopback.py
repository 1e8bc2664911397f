"""A loopback HTTP server for download tests: Range/If-Range requests, 404s and dropped
connections. tests/faults_http.py derives servers with injected faults from it."""

from __future__ import annotations

import hashlib
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def etag_of(body: bytes) -> str:
    """The strong ETag the loopback servers send for `body` (changes with the content)."""
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class FileServer:
    """Serves `files` (path -> bytes) with an ETag per content. Paths in `drop_once` close
    the connection after half the body on their first full request; `requests` records
    (path, Range header) and `if_ranges` the If-Range header of each request. An If-Range
    that does not match the current ETag gets the whole file (200), as RFC 9110 says, unless
    `ignore_if_range` is set (a faulty server that honours Range regardless)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.if_ranges: list[str | None] = []
        self.ignore_if_range = False
        self._server = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                server.if_ranges.append(self.headers.get("If-Range"))
                try:
                    server.respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (e.g. after the headers it wanted)

        return Handler

    def honours_range(self, request, body: bytes) -> bool:
        """Whether to answer a request's Range header (If-Range, when sent, must match)."""
        if not request.headers.get("Range"):
            return False
        if_range = request.headers.get("If-Range")
        return if_range is None or if_range == etag_of(body) or self.ignore_if_range

    def respond(self, request):
        body = self.files.get(request.path)
        if body is None:
            request.send_error(404, "Not Found")
            return
        start = 0
        if self.honours_range(request, body):
            start = int(re.match(r"bytes=(\d+)-", request.headers["Range"])[1])
            if start >= len(body):
                request.send_error(416, "Range Not Satisfiable")
                return
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            request.send_response(200)
        payload = body[start:]
        request.send_header("Content-Length", str(len(payload)))
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("ETag", etag_of(body))
        request.end_headers()
        if request.path in self.drop_once and not start:
            self.drop_once.discard(request.path)
            cut(request, payload[: len(payload) // 2])
            return
        request.wfile.write(payload)

    @contextmanager
    def running(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def cut(request, partial: bytes) -> None:
    """Send `partial` and close the connection: the client sees the body end early."""
    request.wfile.write(partial)
    request.wfile.flush()
    request.close_connection = True
    request.connection.shutdown(2)
