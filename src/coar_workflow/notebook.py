"""What the notebooks (``notebooks/*.py``) share: finding the run whose results they show.

A notebook runs from wherever Jupyter started it (often ``notebooks/`` itself), so it
looks for the results rather than assuming the repository root: `find_results`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESULTS_VARIABLE = "COAR_RESULTS"


class ResultsNotFound(FileNotFoundError):
    """No results to show: the message says where the notebook looked and what to set."""

    def _render_traceback_(self) -> list[str]:
        # IPython (Jupyter, nbconvert) shows these lines instead of a traceback.
        return [f"{type(self).__name__}: {self}"]


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def find_results(default: str = "results/mini", start=None) -> Path:
    """The results directory of a run: ``$COAR_RESULTS`` when set, else the first
    ``default`` in ``start`` (the working directory) or a directory above it.

    Neither there: in a notebook, `ResultsNotFound` (shown as one line); run as a script,
    the same line as the exit message (no traceback).
    """
    value = os.environ.get(RESULTS_VARIABLE)
    if value:
        results = Path(value).expanduser()
        if results.is_dir():
            return results
        message = (
            f"{RESULTS_VARIABLE}={value}: no such directory; set {RESULTS_VARIABLE} to a "
            f"run's results directory (e.g. {default})"
        )
    else:
        start = Path.cwd() if start is None else Path(start)
        for directory in (start, *start.parents):
            if (directory / default).is_dir():
                return directory / default
        message = (
            f"no {default}/ in {start} or any directory above it: run the workflow "
            f"(make run) or set {RESULTS_VARIABLE} to a run's results directory"
        )
    if _in_ipython():
        raise ResultsNotFound(message)
    raise SystemExit(f"{ResultsNotFound.__name__}: {message}")
