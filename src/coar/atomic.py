"""Atomic outputs: a killed or failed writer leaves no file that looks finished.

A writer works on a hidden sibling, ``.<name>.tmp<pid><suffix>``, renamed onto the
final name only when it succeeded; on failure the sibling is removed. A writer that was
killed (SIGKILL, out of memory, a job's time limit) cannot remove it, so the next writer
of the same file removes the siblings left by processes that no longer run.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary siblings of `path` whose writer process no longer runs;
    return them."""
    path = Path(path)
    prefix = f".{path.name}.tmp"
    removed = []
    for candidate in path.parent.glob(glob.escape(prefix) + "*"):
        pid_text = candidate.name[len(prefix) :]
        if path.suffix and pid_text.endswith(path.suffix):
            pid_text = pid_text[: -len(path.suffix)]
        if candidate.is_file() and pid_text.isdigit() and not _process_exists(int(pid_text)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic_text(path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
