"""Logging for workflow steps: everything, progress bars included, goes to the rule's log."""

from __future__ import annotations

import functools
import logging
import sys
from contextlib import contextmanager
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


@contextmanager
def labelled_progress(module, desc: str, **options):
    """While active, the tqdm bars that ``module`` draws (a third-party module that offers
    no label of its own, e.g. ``ffcv.writer``) carry ``desc`` and ``options`` (tqdm's).

    >>> import io, types, tqdm
    >>> fake, log = types.SimpleNamespace(tqdm=tqdm.tqdm), io.StringIO()
    >>> with labelled_progress(fake, "gather mini_digits", file=log):
    ...     steps = list(fake.tqdm(range(3), ncols=60))
    >>> log.getvalue().split(chr(13))[-1].split("|")[0]  # the bar's last state
    'gather mini_digits: 100%'
    >>> fake.tqdm is tqdm.tqdm
    True
    """
    original = module.tqdm
    module.tqdm = functools.partial(original, desc=desc, **options)
    try:
        yield
    finally:
        module.tqdm = original
