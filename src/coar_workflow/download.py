"""Checked, resumable, atomic HTTP downloads.

``download(url, dest, sha256=...)`` streams into a hidden sibling ``.NAME.part``,
resumes it with an HTTP ``Range`` request after a dropped connection (retrying
with backoff), verifies the pinned digest and only then renames it onto
``dest``. A checksum mismatch or an HTTP error status removes the partial file
and raises :class:`DownloadError`; nothing that looks finished is left behind.
When retries are exhausted on connection errors alone, the ``.part`` file is
kept so that the next attempt resumes instead of starting again (it never has
the final name).

Resuming is safe only against the same version of the file: the ETag (or
Last-Modified) of the response that started the ``.part`` file is recorded in a
sidecar ``.NAME.part.validator`` and sent as ``If-Range`` when resuming. A server
holding another version answers with the whole file, which replaces the
``.part`` contents; a ``.part`` file without a recorded validator is discarded.

A body shorter than its Content-Length (or Content-Range) is a dropped
connection. A body sent with neither and without chunked framing ends when the
connection closes, so a truncated one looks complete: its size is then asked
for with a ranged request for the first byte (``Range: bytes=0-0``, read from
``Content-Range``). If the server does not tell, an unpinned download is
refused (pin its sha256), and a pinned one is left to its digest.

HTTP error statuses: server errors (5xx, 408, 429) are retried and then
reported as server-side problems to retry later; others (404, ...) are final
and point at the URL in the config.

Digests: ``sha256`` (full hex digest), ``md5`` (as published for e.g. CIFAR-10
and CelebA) and ``sha256_prefix`` (the 8 hex characters torchvision embeds in
its weight filenames). A file with no pinned digest is accepted (once its size
is confirmed) and its SHA-256 is returned and logged, so that it can be pinned
in the config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException, IncompleteRead
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Statuses worth retrying (server busy or overloaded); every other error status is final.
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A download failed for good (HTTP error, checksum mismatch, retries exhausted)."""


@dataclass(frozen=True)
class Digests:
    sha256: str
    md5: str
    size: int


def file_digests(path) -> Digests:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return Digests(sha.hexdigest(), md5.hexdigest(), size)


def check_digests(
    path, digests: Digests, *, sha256=None, md5=None, sha256_prefix=None, url=None
) -> None:
    """Raise DownloadError naming the file and both digests if any pinned digest differs."""
    source = f" downloaded from {url}" if url else ""
    for label, expected, actual in (
        ("sha256", sha256, digests.sha256),
        ("md5", md5, digests.md5),
        ("sha256 prefix", sha256_prefix, digests.sha256[: len(sha256_prefix or "")]),
    ):
        if expected and actual != expected.lower():
            raise DownloadError(
                f"checksum mismatch for {path}{source}: {label} is {actual}, expected "
                f"{expected}. The file was removed; if the source changed on purpose, "
                "update the pinned digest in the config."
            )


def _part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _validator_path(dest: Path) -> Path:
    """Sidecar of the ``.part`` file: which version of the URL (ETag/Last-Modified) it holds."""
    return dest.with_name(f".{dest.name}.part.validator")


def _discard(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _open(url: str, timeout: float, *, byte_range: str | None = None, if_range: str | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": "coar-download/1"})
    if byte_range:
        request.add_header("Range", f"bytes={byte_range}")
    if if_range:
        request.add_header("If-Range", if_range)
    return urllib.request.urlopen(request, timeout=timeout)


def _validator_of(response) -> dict | None:
    """The response's ETag/Last-Modified (weak ETags cannot be used with If-Range)."""
    etag = response.headers.get("ETag")
    if etag and etag.startswith("W/"):
        etag = None
    last_modified = response.headers.get("Last-Modified")
    if not (etag or last_modified):
        return None
    return {"etag": etag, "last_modified": last_modified}


def _read_validator(sidecar: Path, url: str) -> dict | None:
    """The validator recorded for the ``.part`` file; None when missing, unreadable or stale."""
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("url") != url:
        return None
    if not (record.get("etag") or record.get("last_modified")):
        return None
    return record


def _same_version(recorded: dict, current: dict | None) -> bool:
    """False when a response's validator shows a different version than the recorded one."""
    if current is None:
        return True
    for key in ("etag", "last_modified"):
        if recorded.get(key) and current.get(key):
            return recorded[key] == current[key]
    return True


def _total_size(response) -> int | None:
    """The full size of the resource from a Content-Range header (``bytes a-b/N``, ``*/N``)."""
    match = re.match(r"bytes (?:\d+-\d+|\*)/(\d+)", response.headers.get("Content-Range", ""))
    return int(match[1]) if match else None


def _resumed_from(response, offset: int) -> int | None:
    """Byte offset the response body starts at: 0 for a whole-file 200 answer, `offset` for a
    206 answer resuming there, None for anything else (unusable)."""
    if response.status == 200:
        return 0
    if offset and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match[1]) == offset:
            return offset
    return None


def _start_afresh(url: str, part: Path, sidecar: Path, response) -> None:
    """Empty `part` and record the validator of `response` (a 200 answer) beside it."""
    sidecar.unlink(missing_ok=True)
    part.write_bytes(b"")
    validator = _validator_of(response)
    if validator is not None:
        sidecar.write_text(json.dumps({"url": url, **validator}) + "\n")


def _open_part(url: str, part: Path, sidecar: Path, timeout: float):
    """Open `url` to continue `part`: (response, byte offset its body starts at).

    A ``.part`` file is resumed only with the validator recorded when it was started, sent as
    If-Range: a server holding a different version answers 200 with the whole file, which
    replaces the ``.part`` contents instead of being spliced onto them.
    """
    offset = part.stat().st_size if part.exists() else 0
    validator = _read_validator(sidecar, url) if offset else None
    if offset and validator is None:
        log.warning("discarding %s: no record of which version of %s it holds", part, url)
    elif offset:
        if_range = validator.get("etag") or validator["last_modified"]
        try:
            response = _open(url, timeout, byte_range=f"{offset}-", if_range=if_range)
        except urllib.error.HTTPError as err:
            if err.code != 416:
                raise
            err.close()
            log.info("server refused to resume %s at byte %d; restarting", url, offset)
        else:
            start = _resumed_from(response, offset)
            if start and _same_version(validator, _validator_of(response)):
                return response, start
            if start == 0:
                log.warning("%s changed on the server or ignored the Range; restarting", url)
                _start_afresh(url, part, sidecar, response)
                return response, 0
            log.warning("server answered a resume of %s with another version; restarting", url)
            response.close()
    response = _open(url, timeout)
    if _resumed_from(response, 0) != 0:
        response.close()
        raise ConnectionError(f"unexpected HTTP {response.status} answer from {url}")
    _start_afresh(url, part, sidecar, response)
    return response, 0


def _probe_size(url: str, timeout: float, validator: dict | None) -> int | None:
    """The size of `url` from a ranged request for its first byte; None if not reported.

    Raises ConnectionError when the resource changed since the download began.
    """
    try:
        response = _open(url, timeout, byte_range="0-0")
    except urllib.error.HTTPError as err:
        if err.code in RETRY_STATUSES:
            raise
        with err:
            return _total_size(err) if err.code == 416 else None
    with response:  # closed without reading the body
        if validator and not _same_version(validator, _validator_of(response)):
            raise ConnectionError(f"{url} changed on the server during the download")
        if response.status == 206:
            return _total_size(response)
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        length = response.headers.get("Content-Length")
        return int(length) if length is not None and not chunked else None


def _fetch_once(url: str, dest: Path, timeout: float, *, pinned: bool) -> bool:
    """Bring `dest`'s ``.part`` file up to the whole of `url`; raise ConnectionError on a
    short read or a connection error. Returns whether the file's size was confirmed by the
    server (Content-Length, Content-Range, chunked framing or a ranged request made
    afterwards); an unconfirmed size is accepted only for a pinned digest, which then
    decides, and refused with a DownloadError otherwise."""
    part, sidecar = _part_path(dest), _validator_path(dest)
    response, start = _open_part(url, part, sidecar, timeout)
    with response:
        total = _total_size(response) if start else None
        length = response.headers.get("Content-Length")
        if total is None and length is not None:
            total = start + int(length)
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        with open(part, "r+b") as f:
            f.seek(start)
            f.truncate()
            try:
                while block := response.read(CHUNK):
                    f.write(block)
            except IncompleteRead as err:
                # A chunked body cut short: keep the bytes that did arrive, to resume after them.
                f.write(err.partial)
                if isinstance(err.__cause__, IncompleteRead):
                    f.write(err.__cause__.partial)
                raise
            written = f.tell()
    if total is None and not chunked:
        # No length and no framing: a connection closed early looks like the end of the body.
        total = _probe_size(url, timeout, _read_validator(sidecar, url))
        if total is None:
            if pinned:
                return False
            raise DownloadError(
                f"{url} was sent without a Content-Length and the server did not report its "
                f"size for a ranged request either, so a transfer cut short cannot be told "
                f"from a complete one; {written} bytes were received and nothing was written "
                f"to {dest}. Pin the file's sha256 in the config "
                "(from the publisher or a trusted copy) so the download can be verified, or "
                "retry later when the server reports the size."
            )
    if total is not None and written < total:
        raise ConnectionError(f"connection closed after {written} of {total} bytes from {url}")
    if total is not None and written > total:
        _discard(part, sidecar)
        raise ConnectionError(
            f"received {written} bytes from {url} but the server reports {total}; restarting"
        )
    return True


def _http_error(err: urllib.error.HTTPError, url: str, dest: Path, attempts: int) -> DownloadError:
    """The final error for an HTTP error status: server-side ones say to retry later."""
    if err.code >= 500 or err.code in RETRY_STATUSES:
        kind = "rate limited" if err.code == 429 else "server error"
        return DownloadError(
            f"{kind}: HTTP {err.code} ({err.reason}) from {url} after {attempts} attempts; "
            f"no file was written to {dest}. This is a problem on the server side, not in the "
            "config: retry later (the download starts again from the beginning)."
        )
    return DownloadError(
        f"HTTP error {err.code} ({err.reason}) downloading {url} to {dest}; "
        "no file was written. Check the URL in the config."
    )


def download(
    url: str,
    dest,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    sha256_prefix: str | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
) -> Digests:
    """Download `url` to `dest` atomically, resuming and retrying; verify pinned digests.

    Returns the file's digests (log them to pin an unpinned file).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, sidecar = _part_path(dest), _validator_path(dest)
    pinned = bool(sha256 or md5 or sha256_prefix)
    for attempt in range(1, retries + 2):
        try:
            size_confirmed = _fetch_once(url, dest, timeout, pinned=pinned)
            break
        except DownloadError:
            _discard(part, sidecar)
            raise
        except urllib.error.HTTPError as err:
            if err.code in RETRY_STATUSES and attempt <= retries:
                log.warning("HTTP %d from %s (attempt %d), retrying", err.code, url, attempt)
            else:
                _discard(part, sidecar)
                raise _http_error(err, url, dest, attempt) from err
        except (urllib.error.URLError, ConnectionError, HTTPException, TimeoutError) as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                if have and _read_validator(sidecar, url) is not None:
                    kept = (
                        f"{have} bytes are kept in {part} and the next attempt resumes from there"
                    )
                elif have:
                    _discard(part, sidecar)
                    kept = (
                        f"the {have} bytes received were discarded: the server sends no ETag or "
                        "Last-Modified to resume against, so the next attempt starts from the "
                        "beginning"
                    )
                else:
                    _discard(part, sidecar)
                    kept = "no bytes had arrived, so the next attempt starts from the beginning"
                raise DownloadError(
                    f"downloading {url} to {dest} failed after {attempt} attempts ({err}); "
                    f"{kept}. Retry later, or check the network connection."
                ) from err
            log.warning(
                "attempt %d for %s failed (%s) with %d bytes so far; resuming",
                attempt,
                url,
                err,
                have,
            )
        time.sleep(backoff * attempt)
    digests = file_digests(part)
    try:
        check_digests(dest, digests, sha256=sha256, md5=md5, sha256_prefix=sha256_prefix, url=url)
    except DownloadError as err:
        _discard(part, sidecar)
        if size_confirmed:
            raise
        raise DownloadError(
            f"{err} Note: the server did not report the file's size, so the transfer may have "
            "been cut short; retry the download before changing the pin."
        ) from None
    sidecar.unlink(missing_ok=True)
    os.replace(part, dest)
    if not pinned:
        log.warning(
            "%s has no pinned digest; its sha256 is %s (pin it in the config)", dest, digests.sha256
        )
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, digests.size, digests.sha256)
    return digests
