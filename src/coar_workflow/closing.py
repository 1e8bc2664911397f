"""What a finished workflow run prints last: its headline numbers and where its files are.

The Snakefile's ``onsuccess`` handler logs `closing_message`. Snakemake calls it once, in
the process that planned the run (also under ``--profile slurm``: cluster jobs run with
``--no-hooks``), after every job succeeded; a run with nothing to do prints Snakemake's
"Nothing to be done" instead. The message names only files that exist, so a run of one
target (a single figure) is described as truthfully as a full one.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from coar_workflow.summary import END, START, readme_table


def _shown(path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    path = Path(path).absolute()
    relative = Path(os.path.relpath(path))
    return path.as_posix() if relative.parts[:1] == ("..",) else relative.as_posix()


def _command(name: str) -> str:
    """``name`` as installed next to this Python (``.venv/bin/snakemake`` under ``make
    run``), or the bare name when it is not there."""
    script = Path(sys.executable).parent / name
    return shlex.quote(_shown(script)) if script.is_file() else name


def headline_lines(summary: Path) -> list[str]:
    """The compact table of a ``SUMMARY.md`` as ``result: value`` lines (a terminal is
    narrower than the table)."""
    lines = []
    rows = readme_table(summary.read_text()).splitlines()[1:-1]  # between the markers
    for row in rows[2:]:  # after the header and its rule
        label, value = row.strip().removeprefix("|").removesuffix("|").split("|", 1)
        lines.append(f"  {label.strip().replace('`', '')}: {value.strip().replace('`', '')}")
    return lines


def closing_message(results_dir, configfiles: Iterable = ()) -> str:
    """The text a successful run ends with: the headline numbers (from ``SUMMARY.md``),
    where the figures, ``SUMMARY.md`` and the logs are, and the command that builds the
    HTML report (with the run's ``configfiles``). Paths are relative to the working
    directory (Snakemake's: the repository root, or its ``--directory``)."""
    results = Path(results_dir)
    shown = _shown(results)
    lines = [f"Finished: the results are in {shown}/"]
    summary = results / "SUMMARY.md"
    if summary.is_file():
        try:
            headline = headline_lines(summary)
        except ValueError:  # a SUMMARY.md without its table: say so, do not fail the run
            headline = [f"  (none: {_shown(summary)} has no table between {START} and {END})"]
        lines += [f"Headline numbers, from {_shown(summary)} (every number with its source):"]
        lines += headline
    figures = sorted((results / "figures").glob("*.pdf"))
    if figures:
        names = ", ".join(figure.name for figure in figures)
        lines.append(f"Figures: {shown}/figures/ ({names})")
    if (results / "logs").is_dir():
        lines.append(f"Logs: {shown}/logs/ (one per job)")
    report = [_command("snakemake"), "--report", shlex.quote(_shown(results / "report.html"))]
    report += [f"--configfile {shlex.quote(_shown(c))}" for c in configfiles]
    lines.append(
        "HTML report of the figures with their captions and parameters: " + " ".join(report)
    )
    if figures:
        provenance = f"{_command('coar')} provenance {_shown(figures[0])}"
        lines.append(f"Provenance of a figure: {provenance}")
    return "\n".join(lines)
