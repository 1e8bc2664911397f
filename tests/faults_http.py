"""Loopback HTTP servers with injected faults, for tests/test_download.py.

* :class:`NoLengthServer` sends bodies without Content-Length (the body ends when the
  connection closes, as HTTP/1.0 allows) and can close early, so a truncated body looks
  exactly like a complete one to the client.
* :class:`StatusServer` answers every request with one error status (e.g. 500).
* :class:`ChunkedServer` frames bodies with chunked encoding and can close inside a chunk.
* A server whose content differs from a stale ``.part`` file is a plain
  :class:`loopback.FileServer` whose ``files`` changed between two downloads (its ETag changes
  with the content); ``ignore_if_range`` makes it honour Range even when If-Range mismatches.
"""

from __future__ import annotations

import re

from loopback import FileServer, cut, etag_of


class NoLengthServer(FileServer):
    """Serves `files` with no Content-Length. The next `cut_short` answers to requests
    without Range close the connection after half the body. With `reports_size`, Range
    requests get a 206 whose Content-Range states the total size; without it, Range is
    ignored and nothing anywhere tells the size. `etag` says whether an ETag is sent
    (resuming needs one)."""

    def __init__(self):
        super().__init__()
        self.cut_short = 0
        self.reports_size = True
        self.etag = True

    def respond(self, request):
        body = self.files.get(request.path)
        if body is None:
            request.send_error(404, "Not Found")
            return
        start, end = 0, len(body) - 1
        ranged = self.reports_size and self.honours_range(request, body)
        if ranged:
            match = re.match(r"bytes=(\d+)-(\d*)", request.headers["Range"])
            start = int(match[1])
            end = min(int(match[2]), end) if match[2] else end
            if start >= len(body):
                request.send_response(416)
                request.send_header("Content-Range", f"bytes */{len(body)}")
                request.end_headers()
                return
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            request.send_response(200)
        if self.etag:
            request.send_header("ETag", etag_of(body))
        request.end_headers()
        payload = body[start : end + 1]
        if self.cut_short and "Range" not in request.headers:
            self.cut_short -= 1
            cut(request, payload[: len(payload) // 2])
            return
        request.wfile.write(payload)
        request.close_connection = True


class StatusServer(FileServer):
    """Answers every request with error `status` (500 unless changed)."""

    def __init__(self, status: int = 500):
        super().__init__()
        self.status = status

    def respond(self, request):
        request.send_error(self.status)


class ChunkedServer(FileServer):
    """Serves `files` with chunked framing (no Content-Length, as large downloads often are);
    the next `cut_short` answers to requests without Range close the connection inside
    their only chunk."""

    def __init__(self):
        super().__init__()
        self.cut_short = 0

    def respond(self, request):
        body = self.files.get(request.path)
        if body is None:
            request.send_error(404, "Not Found")
            return
        request.protocol_version = "HTTP/1.1"
        start = 0
        if self.honours_range(request, body):
            start = int(re.match(r"bytes=(\d+)-", request.headers["Range"])[1])
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            request.send_response(200)
        request.send_header("Transfer-Encoding", "chunked")
        request.send_header("ETag", etag_of(body))
        request.send_header("Connection", "close")
        request.end_headers()
        payload = body[start:]
        request.wfile.write(f"{len(payload):x}\r\n".encode())
        if self.cut_short and "Range" not in request.headers:
            self.cut_short -= 1
            cut(request, payload[: len(payload) // 2])
            return
        request.wfile.write(payload + b"\r\n0\r\n\r\n")
        request.close_connection = True
