"""Logging for workflow steps: everything, progress bars included, goes to the rule's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to(path) -> logging.Logger:
    """Send logging and stderr (tqdm progress, warnings) to `path`; return the root logger."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1)  # left open: it serves the whole step
    sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.StreamHandler(stream)],
        force=True,
    )
    logging.captureWarnings(True)
    return logging.getLogger()
