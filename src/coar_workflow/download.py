"""Checked, resumable, atomic HTTP downloads.

``download(url, dest, sha256=...)`` streams into a hidden sibling ``.NAME.part``,
resumes it with an HTTP ``Range`` request after a dropped connection (retrying
with backoff), verifies the pinned digest and only then renames it onto
``dest``. A checksum mismatch or an HTTP error status removes the partial file
and raises :class:`DownloadError`; nothing that looks finished is left behind.
When retries are exhausted on connection errors alone, the ``.part`` file is
kept so that the next attempt resumes instead of starting again (it never has
the final name).

Digests: ``sha256`` (full hex digest), ``md5`` (as published for e.g. CIFAR-10
and CelebA) and ``sha256_prefix`` (the 8 hex characters torchvision embeds in
its weight filenames). A file with no pinned digest is accepted and its SHA-256
is returned and logged, so that it can be pinned in the config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
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


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "coar-download/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _resumed_from(response, offset: int) -> int:
    """Byte offset the response body starts at (0 when the server ignored the Range)."""
    if offset and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match[1]) == offset:
            return offset
    return 0


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part`; raise on a short read or a connection error."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # The part file is not a prefix the server recognises: start again.
            part.unlink()
            response = _open(url, 0, timeout)
            offset = 0
        else:
            raise
    with response:
        start = _resumed_from(response, offset)
        if offset and not start:
            log.info("server ignored the Range request; restarting %s from byte 0", url)
        length = response.headers.get("Content-Length")
        expected_end = start + int(length) if length is not None else None
        with open(part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            while block := response.read(CHUNK):
                f.write(block)
            written = f.tell()
    if expected_end is not None and written < expected_end:
        raise ConnectionError(
            f"connection closed after {written} of {expected_end} bytes from {url}"
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
    part = _part_path(dest)
    for attempt in range(1, retries + 2):
        try:
            _fetch_once(url, part, timeout)
            break
        except urllib.error.HTTPError as err:
            if err.code in RETRY_STATUSES and attempt <= retries:
                log.warning("HTTP %d from %s (attempt %d), retrying", err.code, url, attempt)
            else:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"HTTP error {err.code} ({err.reason}) downloading {url} to {dest}; "
                    "no file was written. Check the URL in the config."
                ) from err
        except (urllib.error.URLError, ConnectionError, HTTPException, TimeoutError) as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise DownloadError(
                    f"downloading {url} failed after {attempt} attempts ({err}); "
                    f"{have} bytes are kept in {part} and the next attempt resumes from there"
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
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    if not (sha256 or md5 or sha256_prefix):
        log.warning(
            "%s has no pinned digest; its sha256 is %s (pin it in the config)", dest, digests.sha256
        )
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, digests.size, digests.sha256)
    return digests
