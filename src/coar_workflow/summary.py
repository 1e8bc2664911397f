"""A run's headline numbers in one Markdown file, and the README's table made from it.

`write_summary(results_dir, path)` reads the small summary files the workflow writes
(``eval/<setup>/summary.csv`` for every setup of Fig. 1 and the GPT-2 figure,
``figures/sample_efficiency_summary.csv``, and ``edits/<setup>/<experiment>/summary.json``
for every Coar-Edit experiment) and writes ``SUMMARY.md``: one section per figure, each
naming the files its numbers come from, and at the top a compact table between the
markers ``<!-- summary:start -->`` and ``<!-- summary:end -->``. The file depends on
those numbers only (no dates, no host, no absolute paths): identical runs give identical
bytes.

`readme_table(summary)` returns that compact table (with its markers) from a
``SUMMARY.md``; the command puts it into the README, or checks that it is there::

    python -m coar_workflow.summary results/mini --readme README.md           # update
    python -m coar_workflow.summary results/mini --readme README.md --check   # exit 1 + diff
    python -m coar_workflow.summary results/mini --write --config config/mini.yaml  # SUMMARY.md
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

START, END = "<!-- summary:start -->", "<!-- summary:end -->"
EXPERIMENTS = ("errors", "forget", "subpopulation", "backdoor", "typographic")
EXPERIMENT_TITLES = {
    "errors": "Fixing individual errors",
    "forget": "Selectively forgetting a class",
    "subpopulation": "Subpopulation robustness",
    "backdoor": "Removing a backdoor",
    "typographic": "Typographic attacks on CLIP",
}
METHOD_NAMES = {"coar": "Coar", "loo": "LOO", "gp": "GP", "nc": "NC", "ii": "II", "atp": "AtP"}
SAMPLE_EFFICIENCY = "figures/sample_efficiency_summary.csv"


# --- reading a run ----------------------------------------------------------------------


def summary_inputs(config: Mapping, results_dir: str) -> list[str]:
    """The summary files of every figure of a workflow config: what rule ``summary``
    reads (eval summaries of the figures without an experiment, each experiment's
    summary.json, one per class for ``forget``, and the sample-efficiency summary)."""
    setups = config["setups"]
    paths = []
    for figure, cfg in config["figures"].items():
        experiment = cfg.get("experiment")
        for setup in cfg["setups"]:
            if setup not in setups:
                raise ValueError(
                    f"config key figures.{figure}.setups names unknown setup {setup!r}"
                )
            if experiment is None:
                paths.append(f"{results_dir}/eval/{setup}/summary.csv")
            elif experiment == "forget":
                paths += [
                    f"{results_dir}/edits/{setup}/forget/class{c}/summary.json"
                    for c in setups[setup]["edits"]["forget"]["classes"]
                ]
            else:
                paths.append(f"{results_dir}/edits/{setup}/{experiment}/summary.json")
    if config.get("sample_efficiency", {}).get("setups"):
        paths.append(f"{results_dir}/{SAMPLE_EFFICIENCY}")
    return paths


def summary_files(results_dir) -> list[Path]:
    """Every summary file of a run that `write_summary` reads, in a fixed order."""
    root = Path(results_dir)
    files = sorted(root.glob("eval/*/summary.csv"))
    if (root / SAMPLE_EFFICIENCY).is_file():
        files.append(root / SAMPLE_EFFICIENCY)
    files += sorted(root.glob("edits/*/*/summary.json"))
    files += sorted(root.glob("edits/*/forget/class*/summary.json"))
    return files


def _classify(root: Path, files: Iterable) -> tuple[dict, Path | None, dict]:
    """Split the files into evaluations (setup -> csv), the sample-efficiency summary and
    edits ((setup, experiment) -> [json, ...]); anything else is an error."""
    evaluations, sample_efficiency, edits = {}, None, {}
    for file in files:
        path = Path(file)
        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise ValueError(f"{path}: not under the results directory {root}") from None
        if m := re.fullmatch(r"eval/([^/]+)/summary\.csv", rel):
            evaluations[m[1]] = path
        elif rel == SAMPLE_EFFICIENCY:
            sample_efficiency = path
        elif m := re.fullmatch(r"edits/([^/]+)/([^/]+)/(?:class\d+/)?summary\.json", rel):
            if m[2] not in EXPERIMENTS:
                raise ValueError(f"{path}: unknown Coar-Edit experiment {m[2]!r}")
            edits.setdefault((m[1], m[2]), []).append(path)
        else:
            raise ValueError(
                f"{path}: not a summary file of a run (eval/<setup>/summary.csv, "
                f"{SAMPLE_EFFICIENCY}, edits/<setup>/<experiment>/[class<c>/]summary.json)"
            )
    for key, paths in edits.items():
        edits[key] = sorted(paths, key=_class_number)
    return evaluations, sample_efficiency, edits


def _class_number(path: Path) -> int:
    m = re.fullmatch(r"class(\d+)", path.parent.name)
    return int(m[1]) if m else -1


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _read_csv(path: Path, columns: Iterable[str]) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(table.columns)})")
    return table


# --- formatting -------------------------------------------------------------------------


def _corr(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f} %"


def _points(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _number(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _rounded(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(round(x))


def _interpolated(row, column: str) -> str:
    """`` (~N interpolated)`` where the interpolated crossing differs from the grid's m."""
    value = _rounded(getattr(row, column, None))
    if value is None or value == _rounded(row.m_needed):
        return ""
    return f" (~{_number(value)} interpolated)"


def _alpha(x) -> str:
    return f"{float(x):g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def figure_label(name: str) -> str:
    """``fig3`` -> ``Fig. 3``, ``figI1`` -> ``Fig. I1``."""
    m = re.fullmatch(r"fig(\w+)", name)
    return f"Fig. {m[1]}" if m else name


def _method(name: str) -> str:
    return METHOD_NAMES.get(name, name)


# --- sections ---------------------------------------------------------------------------


def _evaluation_section(setup: str, path: Path, rel: str) -> tuple[list[str], str]:
    table = _read_csv(path, ("method", "alpha_test", "mean_corr", "ci_low", "ci_high"))
    # n_examples / n_undefined: examples without a correlation make the mean NaN (summary
    # files written before these columns existed count none).
    if "n_undefined" not in table.columns:
        table["n_undefined"] = 0
    alphas = sorted(table["alpha_test"].unique(), reverse=True)
    methods = list(dict.fromkeys(table["method"]))
    rows, undefined = [], False
    for method in methods:
        cells = [_method(method)]
        for alpha in alphas:
            row = table[(table["method"] == method) & (table["alpha_test"] == alpha)]
            if len(row):
                r = row.iloc[0]
                cell = f"{_corr(r.mean_corr)} [{_corr(r.ci_low)}, {_corr(r.ci_high)}]"
                if r.n_undefined > 0:
                    undefined = True
                    total = getattr(r, "n_examples", None)
                    of = f" of {_number(total)}" if total is not None else ""
                    cell += f" ({_number(r.n_undefined)}{of} undefined)"
                cells.append(cell)
            else:
                cells.append("-")
        rows.append(cells)
    lines = [
        f"Mean per-example correlation between true and predicted margins, with 95% "
        f"bootstrap intervals, per alpha_test (`{rel}`):",
        "",
        *_table(["method", *[f"alpha_test {_alpha(a)}" for a in alphas]], rows),
    ]
    if undefined:
        lines += [
            "",
            "n/a (N of M undefined): N examples have no correlation (constant true or "
            "predicted outputs), so the mean over all M is undefined; it is never taken "
            "over fewer examples.",
        ]

    # Compact: Coar and the best baseline over the alpha_test range; a method with an
    # undefined mean at some alpha_test is n/a there, never ranked on the others.
    def span(method: str) -> str:
        values = table[table["method"] == method].sort_values("alpha_test")["mean_corr"]
        if values.isna().any():
            return "n/a (undefined correlations)"
        lo, hi = values.min(), values.max()
        return _corr(lo) if _corr(lo) == _corr(hi) else f"{_corr(lo)}-{_corr(hi)}"

    mean_by_method = table.groupby("method", sort=False)["mean_corr"].apply(
        lambda v: v.mean(skipna=False)
    )
    baselines = mean_by_method.drop("coar", errors="ignore")
    compact = f"Coar {span('coar')}" if "coar" in mean_by_method else ""
    if baselines.notna().any():
        best = baselines.dropna().idxmax()
        compact += f"; best baseline {_method(best)} {span(best)}"
    if baselines.isna().any():
        compact += "; n/a: " + ", ".join(_method(m) for m in baselines.index[baselines.isna()])
    compact += f" (alpha_test {_alpha(min(alphas))}-{_alpha(max(alphas))})"
    return lines, compact


def _sample_efficiency_section(path: Path, rel: str) -> tuple[list[str], list[tuple[str, str]]]:
    table = _read_csv(path, ("solver", "target_corr", "m_full", "m_needed", "fraction_of_full"))
    if "setup" not in table.columns:
        table["setup"] = ""
    lines = [
        "The number of ablations m each solver needs to reach least squares' held-out "
        "correlation at the full m (the first grid point that does, and the crossing "
        f"interpolated in log m), and its correlation near m/4 (`{rel}`):",
        "",
    ]
    rows, compact = [], []
    for setup, group in table.groupby("setup", sort=False):
        for r in group.itertuples():
            rows.append(
                [
                    str(setup),
                    str(r.solver),
                    _corr(r.target_corr),
                    f"{_number(r.m_needed)} of {_number(r.m_full)}",
                    _number(_rounded(getattr(r, "m_crossing_interpolated", None))),
                    _number(getattr(r, "m_near_quarter", None)),
                    _corr(getattr(r, "corr_near_quarter", None)),
                ]
            )
        first = group.iloc[0]
        needed = ", ".join(
            f"{r.solver} {_number(r.m_needed)}{_interpolated(r, 'm_crossing_interpolated')}"
            for r in group.itertuples()
        )
        compact.append(
            (
                f"Sample efficiency, `{setup}`: ablations to reach r = "
                f"{_corr(first.target_corr)} (least squares at m = {_number(first.m_full)})",
                needed,
            )
        )
    lines += _table(
        ["setup", "solver", "target r", "m needed", "m interpolated", "m near m/4", "r near m/4"],
        rows,
    )
    return lines, compact


def _edit_section(setup: str, experiment: str, paths: list[Path], rels: list[str]):
    source = ", ".join(f"`{r}`" for r in rels)
    return edit_section([_read_json(p) for p in paths], setup, experiment, source)


def edit_section(summaries: list[dict], setup: str, experiment: str, source: str):
    """(lines, compact) of one Coar-Edit experiment: a sentence and a Markdown table of
    its numbers before and after the edit, and the one-line form of the compact table,
    from its summaries (``summary.json``; one per class for ``forget``) and ``source``,
    the files they come from. The section of ``SUMMARY.md``, and what each edit job logs.
    """
    if experiment == "errors":
        s = summaries[0]
        n_c = _number(s.get("n_components"))
        lines = [
            f"Each misclassified test example is edited on its own (`{setup}`; {source}):",
            "",
            *_table(
                ["errors", "fixed", "median k", "median change of accuracy: test / train / val"],
                [
                    [
                        _number(s["n_errors"]),
                        f"{_number(s['n_fixed'])} ({_pct(s['fraction_fixed'])})",
                        f"{_number(s['median_k'])} of {n_c}",
                        " / ".join(
                            _points(s.get(f"median_{split}_change"))
                            for split in ("test", "train", "val")
                        )
                        + " points",
                    ]
                ],
            ),
        ]
        compact = (
            f"{_number(s['n_fixed'])} of {_number(s['n_errors'])} errors fixed "
            f"({_pct(s['fraction_fixed'])}); median k {_number(s['median_k'])} of {n_c}; "
            f"median test accuracy change {_points(s.get('median_test_change'))} points"
        )
        return lines, compact
    if experiment == "forget":
        rows = []
        for s in summaries:
            rows.append(
                [
                    _number(s["target_class"]),
                    f"{_pct(s['test_target_accuracy_before'])} -> "
                    f"{_pct(s['test_target_accuracy_after'])}",
                    f"{_pct(s['test_others_accuracy_before'])} -> "
                    f"{_pct(s['test_others_accuracy_after'])}",
                    f"{_pct(s['val_target_accuracy_after'])} / "
                    f"{_pct(s['val_others_accuracy_after'])}",
                    f"{_number(s['k'])} of {_number(s['n_components'])}",
                ]
            )
        lines = [
            f"Each class forgotten on its own (`{setup}`; test accuracy before -> after "
            f"the edit, k chosen on validation; {source}):",
            "",
            *_table(
                ["class", "class accuracy", "other classes", "val after (class / others)", "k"],
                rows,
            ),
        ]
        classes = " / ".join(_number(s["target_class"]) for s in summaries)
        compact = (
            f"class {classes}: class accuracy "
            + " / ".join(_pct(s["test_target_accuracy_after"]) for s in summaries)
            + " (before "
            + " / ".join(_pct(s["test_target_accuracy_before"]) for s in summaries)
            + "), other classes "
            + " / ".join(_pct(s["test_others_accuracy_after"]) for s in summaries)
            + " (before "
            + " / ".join(_pct(s["test_others_accuracy_before"]) for s in summaries)
            + "); k "
            + " / ".join(_number(s["k"]) for s in summaries)
            + f" of {_number(summaries[0]['n_components'])}"
        )
        return lines, compact
    if experiment == "subpopulation":
        s = summaries[0]
        metrics = [
            ("worst-group accuracy", "worst_group_accuracy"),
            ("group-average accuracy", "group_average_accuracy"),
            ("accuracy", "accuracy"),
        ]
        rows = [
            [
                name,
                _pct(s[f"val_{key}_before"]),
                _pct(s[f"val_{key}_after"]),
                _pct(s[f"test_{key}_before"]),
                _pct(s[f"test_{key}_after"]),
            ]
            for name, key in metrics
        ]
        lines = [
            f"Target groups {s.get('target_groups', '?')} (`{setup}`; k = {_number(s['k'])} "
            f"of {_number(s['n_components'])}, chosen on validation; {source}):",
            "",
            *_table(["metric", "val before", "val after", "test before", "test after"], rows),
        ]
        compact = (
            f"worst group {_pct(s['test_worst_group_accuracy_before'])} -> "
            f"{_pct(s['test_worst_group_accuracy_after'])}, accuracy "
            f"{_pct(s['test_accuracy_before'])} -> {_pct(s['test_accuracy_after'])}; "
            f"k {_number(s['k'])} of {_number(s['n_components'])}"
        )
        return lines, compact
    # backdoor, typographic: clean and triggered/attacked accuracy, paired correlation
    s = summaries[0]
    kinds = sorted(
        {m[1] for key in s if (m := re.fullmatch(r"test_(\w+)_accuracy_before", key))},
        key=lambda kind: (kind != "clean", kind),
    )
    rows = [
        [
            kind,
            _pct(s[f"val_{kind}_accuracy_before"]),
            _pct(s[f"val_{kind}_accuracy_after"]),
            _pct(s[f"test_{kind}_accuracy_before"]),
            _pct(s[f"test_{kind}_accuracy_after"]),
        ]
        for kind in kinds
        if f"val_{kind}_accuracy_before" in s
    ]
    if "test_paired_correlation_before" in s:
        rows.append(
            [
                "paired output correlation",
                "",
                "",
                _corr(s["test_paired_correlation_before"]),
                _corr(s["test_paired_correlation_after"]),
            ]
        )
    lines = [
        f"`{setup}`: k = {_number(s['k'])} of {_number(s['n_components'])} "
        f"({_pct(s.get('fraction_ablated'))}), chosen on validation ({source}):",
        "",
        *_table(["accuracy", "val before", "val after", "test before", "test after"], rows),
    ]
    other = [k for k in kinds if k != "clean"]
    compact = (
        "; ".join(
            f"{kind} {_pct(s[f'test_{kind}_accuracy_before'])} -> "
            f"{_pct(s[f'test_{kind}_accuracy_after'])}"
            for kind in [*other, "clean"]
            if f"test_{kind}_accuracy_before" in s
        )
        + f"; k {_number(s['k'])} of {_number(s['n_components'])}"
    )
    return lines, compact


# --- the file ---------------------------------------------------------------------------


def _figure_plan(figures: Mapping | None, evaluations: dict, edits: dict):
    """(label, title, [("eval", setup) | ("edit", setup, experiment)]) per figure: the
    config's figures table where given, else one entry per file found."""
    plan, seen = [], set()
    for name, cfg in (figures or {}).items():
        items = []
        for setup in cfg.get("setups", []):
            key = ("edit", setup, cfg["experiment"]) if "experiment" in cfg else ("eval", setup)
            present = (
                (setup, cfg["experiment"]) in edits if "experiment" in cfg else setup in evaluations
            )
            if present:
                items.append(key)
                seen.add(key)
        if items:
            plan.append((figure_label(name), cfg.get("title", ""), items))
    rest_eval = [("eval", s) for s in sorted(evaluations) if ("eval", s) not in seen]
    if rest_eval:
        plan.append(("Evaluation", "Evaluating Coar", rest_eval))
    for setup, experiment in sorted(edits, key=lambda k: (EXPERIMENTS.index(k[1]), k[0])):
        if ("edit", setup, experiment) not in seen:
            plan.append(("Coar-Edit", EXPERIMENT_TITLES[experiment], [("edit", setup, experiment)]))
    return plan


def render_summary(
    results_dir,
    files: Iterable | None = None,
    figures: Mapping | None = None,
    name: str | None = None,
) -> str:
    """The text of ``SUMMARY.md`` for the run in ``results_dir`` (its summary files, or
    ``files``; ``figures``: the config's figures table, for figure numbers and titles)."""
    root = Path(results_dir)
    files = summary_files(root) if files is None else list(files)
    if not files:
        raise FileNotFoundError(
            f"{root}: no summary files (eval/<setup>/summary.csv, edits/...): "
            "run the workflow first"
        )
    evaluations, sample_efficiency, edits = _classify(root, files)

    def rel(path: Path) -> str:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()

    sections, compact = [], []
    for label, title, items in _figure_plan(figures, evaluations, edits):
        heading = f"## {label}: {title}" if title else f"## {label}"
        body = [heading, ""]
        for item in items:
            if item[0] == "eval":
                setup = item[1]
                lines, line = _evaluation_section(
                    setup, evaluations[setup], rel(evaluations[setup])
                )
                body += [f"### `{setup}`", "", *lines, ""]
                compact.append((f"{label}, `{setup}`: mean correlation", line))
            else:
                _, setup, experiment = item
                paths = edits[(setup, experiment)]
                lines, line = _edit_section(setup, experiment, paths, [rel(p) for p in paths])
                body += [f"### `{setup}`: {experiment}", "", *lines, ""]
                compact.append(
                    (f"{label}, {EXPERIMENT_TITLES[experiment].lower()} (`{setup}`)", line)
                )
        sections.append(body)
        if label == "Fig. 1" and sample_efficiency is not None:
            lines, lines_compact = _sample_efficiency_section(
                sample_efficiency, rel(sample_efficiency)
            )
            sections.append(["## Sample efficiency", "", *lines, ""])
            compact += lines_compact
            sample_efficiency = None
    if sample_efficiency is not None:
        lines, lines_compact = _sample_efficiency_section(sample_efficiency, rel(sample_efficiency))
        sections.append(["## Sample efficiency", "", *lines, ""])
        compact += lines_compact
    title = name or root.as_posix()
    machines = computed_on(files)
    head = [
        f"# Results summary: `{title}`",
        "",
        "Headline numbers of the run, written by `coar_workflow.summary` from the files "
        "named in each section (paths relative to the results directory). Accuracies are "
        "on the test split unless marked val; every edit's k is chosen on validation data.",
        "",
        *([machines, ""] if machines else []),
        START,
        *_table(["result", "value"], [[what, value] for what, value in compact]),
        END,
        "",
    ]
    text = "\n".join(head + [line for body in sections for line in body])
    return text.rstrip("\n") + "\n"


def computed_on(files: Iterable) -> str | None:
    """Where the steps behind ``files`` ran, from their provenance chains: a sentence
    naming each CPU, device and PyTorch version. None when a file has no record (made by
    hand, or a test's fake run): the sentence speaks for every step or not at all. A
    damaged record raises its ProvenanceError, which names it. Identical reruns give
    identical bytes only on the same machine and software; float kernels differ between
    CPU families, so models trained elsewhere differ a little."""
    from coar_workflow.provenance import chain

    machines = set()
    for path in files:
        try:
            steps = chain(path)
        except FileNotFoundError:
            return None
        for step in steps:
            record = step.record or {}
            device, packages = record.get("device") or {}, record.get("packages") or {}
            if device.get("cpu"):
                machines.add(
                    (device["cpu"], device.get("cpus"), device.get("used"), packages.get("torch"))
                )
    if not machines:
        return None
    where = "; ".join(
        f"CPU `{cpu}` ({cpus} cores), device {used}, torch {torch}"
        for cpu, cpus, used, torch in sorted(machines, key=str)
    )
    return (
        f"Computed on {where} (every step behind these files, from their provenance "
        "records). A rerun on the same machine and software gives identical bytes; another "
        "CPU family or PyTorch build trains slightly different models, and the numbers move "
        "with them."
    )


def write_summary(
    results_dir,
    path,
    files: Iterable | None = None,
    figures: Mapping | None = None,
    name: str | None = None,
) -> Path:
    """Write ``SUMMARY.md`` (`render_summary`) to ``path``, atomically."""
    from coar.atomic import atomic_path

    text = render_summary(results_dir, files, figures, name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def readme_table(summary) -> str:
    """The compact table of a ``SUMMARY.md`` (a path or its text), markers included."""
    text = Path(summary).read_text() if isinstance(summary, Path) else str(summary)
    if "\n" not in text and Path(text).is_file():
        text = Path(text).read_text()
    return _between_markers(text, "summary")


def _between_markers(text: str, source: str) -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{source}: no table between {START} and {END}")
    return text[start : end + len(END)]


def replace_table(readme_text: str, table: str) -> str:
    """The README with its marked table replaced by ``table``."""
    old = _between_markers(readme_text, "README")
    return readme_text.replace(old, table, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coar_workflow.summary",
        description="Write a run's SUMMARY.md, or put its compact table into the README.",
    )
    parser.add_argument("results_dir", help="a run's results directory, e.g. results/mini")
    parser.add_argument(
        "--write",
        action="store_true",
        help="(re)write RESULTS_DIR/SUMMARY.md from the run's summary files",
    )
    parser.add_argument(
        "--config", help="config file whose figures table names the figures (with --write)"
    )
    parser.add_argument(
        "--summary", help="the SUMMARY.md to read (default: RESULTS_DIR/SUMMARY.md)"
    )
    parser.add_argument(
        "--name", help="the run's name in the summary's title (default: RESULTS_DIR)"
    )
    parser.add_argument("--readme", help="a README with the markers: put the table there")
    parser.add_argument(
        "--check",
        action="store_true",
        help="with --readme: change nothing, exit 1 with a diff if it differs",
    )
    args = parser.parse_args(argv)
    results = Path(args.results_dir)
    summary = Path(args.summary) if args.summary else results / "SUMMARY.md"
    if args.write:
        figures = None
        if args.config:
            import yaml

            figures = yaml.safe_load(Path(args.config).read_text()).get("figures")
        name = args.name or results.as_posix().rstrip("/")
        write_summary(results, summary, figures=figures, name=name)
        print(f"wrote {summary}")
    if not args.readme:
        return 0
    if not summary.is_file():
        print(f"{summary}: no such file; run the workflow (rule summary) first", file=sys.stderr)
        return 2
    table = readme_table(summary.read_text())
    readme = Path(args.readme)
    old = readme.read_text()
    new = replace_table(old, table)
    if args.check:
        if new != old:
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"{readme} (committed)",
                    f"{readme} (from {summary})",
                )
            )
            return 1
        print(f"{readme}: the table matches {summary}")
        return 0
    if new != old:
        readme.write_text(new)
        print(f"{readme}: table updated from {summary}")
    else:
        print(f"{readme}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
