"""The README and the documentation site: length, links, the results table, the mkdocs
build, and every command and Python block they show.

Every shell command in README.md and docs/*.md (the lines of ```bash, ```sh and
```console blocks) must be in COMMANDS below, which says how the test exercises it: run
as written when that is cheap, or a dry run (`make -n`, `snakemake ... -n`, `pip
--dry-run`, `--help`) when it is expensive or needs a cluster. A new command in the docs
fails `test_every_doc_command_is_exercised` until it gets an entry here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coar_workflow import summary as summary_mod

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SNAPSHOT = REPO / "docs" / "embedded-default.md"
RUN_SUMMARY = REPO / "results" / "mini" / "SUMMARY.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
VENV_BIN = (
    REPO / ".venv" / "bin" if (REPO / ".venv" / "bin").is_dir() else Path(sys.executable).parent
)
SHELL_LANGS = {"bash", "sh", "console", "shell"}
# Packages the library must do without (as tests/test_layout.py).
WORKFLOW_PACKAGES = ("snakemake", "ffcv", "open_clip", "transformers", "jupytext", "seaborn", "cv2")

SLURM_ENV = "COAR_SLURM_ACCOUNT=myproject COAR_SLURM_GPU_PARTITION=gpu COAR_SLURM_GPU_MODEL=a100"
SUMMARY_CHECK = (
    "python -m coar_workflow.summary results/mini --summary docs/embedded-default.md "
    "--readme README.md --check"
)


def _provenance(command: str) -> str:
    """Needs a run of the embedded default: real when there is one, else its --help."""
    if (REPO / "results/mini/figures/fig1.pdf").is_file():
        return command
    return ".venv/bin/coar provenance --help"


def _tiny_gpt2_heads(command: str) -> str:
    """A model file of a run of the embedded default when there is one, else its setup
    (the same architecture)."""
    model = "results/mini/models/tiny_gpt2_heads.pt"
    if not (REPO / model).is_file():
        command = command.replace(model, "tiny_gpt2_heads")
    return f"{command} | grep -x 'total: 16'"


def _notebook(command: str) -> str:
    """Executes a notebook on the run's results, or, without a run, the one notebook that
    needs none (its stand-in); into a temporary file, with a plot among its outputs. The
    kernel runs in the output's directory: COAR_RESULTS names the run's results."""
    if not (REPO / "results/mini/edits/mini_digits/forget").is_dir():
        command = command.replace("edit_forget.py", "edit_typographic.py")
    out = '"$(mktemp -d)/notebook.ipynb"'
    return (
        f"out={out}; COAR_RESULTS=$PWD/results/mini {command} --output $out "
        "&& grep -q image/png $out"
    )


# documented command (exact, comment removed) -> the command the test runs (or a function
# of the documented command giving it). Run from the repository root.
COMMANDS = {
    # README.md
    "make run": "make -n run",
    "make test": "make -n test",
    "pip install .": "pip install --dry-run --no-deps --no-build-isolation --no-index .",
    # docs/index.md
    "make -n run": "make -n run",
    # docs/pipeline.md
    ".venv/bin/python -m coar_workflow.config config/mini.yaml": lambda c: (
        f"{c} | grep -x 'config/mini.yaml: readable, no key given twice'"
    ),
    "python -m coar_workflow.summary results/mini --readme README.md": SUMMARY_CHECK,
    "python -m coar_workflow.summary results/mini --readme README.md --check": SUMMARY_CHECK,
    # docs/pipeline.md, docs/editing.md
    ".venv/bin/snakemake results/mini/figures/fig3.pdf --configfile=config/mini.yaml --cores 2": (
        ".venv/bin/snakemake results/mini/figures/fig3.pdf --configfile=config/mini.yaml "
        "--cores 2 -n --quiet"
    ),
    # docs/paper.md: planning the paper's DAG is the command itself
    ".venv/bin/snakemake -n": ".venv/bin/snakemake -n --quiet",
    # docs/editing.md
    ".venv/bin/jupytext --to ipynb --execute notebooks/edit_forget.py": _notebook,
    # docs/cluster.md
    "export COAR_SLURM_ACCOUNT=myproject COAR_SLURM_GPU_PARTITION=gpu COAR_SLURM_GPU_MODEL=a100": (
        lambda command: command + " && test $COAR_SLURM_GPU_MODEL = a100"
    ),
    ".venv/bin/snakemake --profile slurm results/mini/figures/fig3.pdf --configfile=config/mini.yaml": (  # noqa: E501
        lambda command: f"{SLURM_ENV} {command} -n --quiet"
    ),
    # docs/reproducibility.md
    ".venv/bin/coar provenance results/mini/figures/fig1.pdf": _provenance,
    ".venv/bin/coar provenance results/mini/figures/fig1.pdf --json": _provenance,
    # docs/components.md, docs/layout.md
    ".venv/bin/coar components gpt2 --kind attention_heads": lambda c: (
        f"{c} | grep -x 'total: 144'"
    ),
    ".venv/bin/coar components mini_digits": lambda c: f"{c} | grep -x 'total: 288'",
    ".venv/bin/coar components resnet18": lambda c: f"{c} | grep -x 'total: 3904'",
    ".venv/bin/coar --help": lambda c: f"{c} | grep -c 'coar components resnet18'",
    ".venv/bin/coar components results/mini/models/tiny_gpt2_heads.pt": _tiny_gpt2_heads,
    # docs/performance.md: benchmarks take minutes (and a GPU for run_gpu.sh)
    ".venv/bin/python bench/ablation.py --setup mini_digits --device cpu": (
        ".venv/bin/python bench/ablation.py --help"
    ),
    "bash bench/run_gpu.sh": "bash -n bench/run_gpu.sh",
    ".venv/bin/python bench/attribute_overhead.py --threads 1": (
        ".venv/bin/python bench/attribute_overhead.py --help"
    ),
}


# --- reading the pages ------------------------------------------------------------------


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line number) of every fenced block of a Markdown file."""
    blocks, lang, lines, start = [], None, [], 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if lang is None and stripped.startswith("```"):
            lang, lines, start = stripped[3:].strip().lower(), [], number + 1
        elif lang is not None and stripped.startswith("```"):
            blocks.append((lang, "\n".join(lines) + "\n", start))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"{path}: unclosed code block from line {start - 1}"
    return blocks


def shell_commands() -> dict[str, list[str]]:
    """Documented command -> where it appears ("file:line")."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for lang, text, start in fenced_blocks(page):
            if lang not in SHELL_LANGS:
                continue
            for offset, line in enumerate(text.splitlines()):
                command = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ").strip()
                if command:
                    where = f"{page.relative_to(REPO)}:{start + offset}"
                    found.setdefault(command, []).append(where)
    return found


def python_blocks(page: Path) -> list[tuple[str, int]]:
    return [(text, start) for lang, text, start in fenced_blocks(page) if lang in ("python", "py")]


def marked_table(text: str) -> str:
    return summary_mod._between_markers(text, "README")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["NO_MKDOCS_2_WARNING"] = "1"
    for name in ("COAR_SLURM_ACCOUNT", "COAR_SLURM_PARTITION", "COAR_SLURM_GPU_PARTITION"):
        env.pop(name, None)
    return env


# --- the README -------------------------------------------------------------------------


def test_readme_is_short():
    n_lines = len(README.read_text().splitlines())
    assert n_lines <= 210, f"README.md has {n_lines} lines: move details to docs/"


def test_relative_links_resolve():
    """README's links into docs/ work on GitHub too (mkdocs checks the pages' own links)."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") for t in local)
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_table_matches_the_run():
    """The README's results table is the one of the embedded default's run: of the
    committed summary of the reference run (docs/embedded-default.md, a copy of its
    SUMMARY.md) and, in a checkout that has run `make run`, of results/mini/SUMMARY.md."""
    readme = marked_table(README.read_text())
    summaries = [SNAPSHOT] + ([RUN_SUMMARY] if RUN_SUMMARY.is_file() else [])
    for summary in summaries:
        expected = summary_mod.readme_table(summary.read_text())
        assert expected.count("\n") > 4, f"the table of {summary} is empty"
        assert readme == expected, (
            f"README.md's table differs from {summary}: run python -m coar_workflow.summary "
            "results/mini --readme README.md, and copy results/mini/SUMMARY.md to "
            "docs/embedded-default.md"
        )


def test_readme_quick_start_runs_without_workflow_packages(tmp_path):
    """The quick start runs as written where none of the workflow's packages can be
    imported, and prints the top components."""
    blocks = python_blocks(README)
    assert blocks, "README.md has no Python quick start"
    quick_start = blocks[0][0]
    (tmp_path / "quick_start.py").write_text(quick_start)
    runner = textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {WORKFLOW_PACKAGES!r}
        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not available here")
                return None
        sys.meta_path.insert(0, Blocked())
        code = compile(open("quick_start.py").read(), "README quick start", "exec")
        exec(code, {{"__name__": "__main__"}})
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", runner],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    top = re.findall(r"\('([\w.]+\[\d+\])', (-?[\d.e-]+)\)", result.stdout)
    assert len(top) == 5, f"expected the 5 top components, got:\n{result.stdout}"
    assert "mean correlation" in result.stdout
    assert (tmp_path / "resnet18_coar.pt").is_file()


# --- the documentation pages ------------------------------------------------------------


def test_doc_python_blocks_run(tmp_path):
    """Every Python block of docs/*.md runs, each in its own namespace and working
    directory (in one process, to import torch once)."""
    blocks = [
        [text, f"{page.relative_to(REPO)}:{start}"]
        for page in PAGES[1:]
        for text, start in python_blocks(page)
    ]
    assert blocks, "docs/*.md have no Python blocks"
    runner = textwrap.dedent(
        """
        import json, os
        for i, (text, where) in enumerate(json.load(open("blocks.json"))):
            os.makedirs(f"block{i}")
            os.chdir(f"block{i}")
            print(f"--- {where}", flush=True)
            exec(compile(text, where, "exec"), {"__name__": "__main__"})
            os.chdir("..")
        """
    )
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    result = subprocess.run(
        [sys.executable, "-c", runner],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("--- ") == len(blocks)


def test_mkdocs_build_strict(tmp_path):
    mkdocs = VENV_BIN / "mkdocs"
    command = [str(mkdocs)] if mkdocs.is_file() else [sys.executable, "-m", "mkdocs"]
    result = subprocess.run(
        [*command, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "api" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "api" / "index.html").read_text()
    assert 'id="coar.api.attribute"' in api and 'id="coar.api.AttributionRun"' in api


def test_every_doc_command_is_exercised():
    found = shell_commands()
    missing = {c: w for c, w in found.items() if c not in COMMANDS}
    assert not missing, (
        "commands in the docs without an entry in tests/test_docs.py COMMANDS (say how the "
        f"test exercises each): {missing}"
    )
    stale = sorted(set(COMMANDS) - set(found))
    assert not stale, f"COMMANDS entries that no page shows any more: {stale}"


def _exercise(command: str) -> str:
    how = COMMANDS[command]
    run = how(command) if callable(how) else how
    return run.replace(".venv/bin/", f"{VENV_BIN}/")


_RESULTS: dict[str, subprocess.CompletedProcess] = {}


def _run_exercise(run: str) -> subprocess.CompletedProcess:
    """Run an exercise once (two documented commands may share one), one at a time: in
    parallel, torch's threads oversubscribe the cores and everything slows down."""
    if run not in _RESULTS:
        _RESULTS[run] = subprocess.run(
            ["bash", "-c", f"set -eo pipefail; {run}"],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    return _RESULTS[run]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_doc_command(command):
    """Each documented command, as COMMANDS exercises it, succeeds (from the repo root)."""
    if command not in shell_commands():
        pytest.skip("no page shows this command (test_every_doc_command_is_exercised fails)")
    run = _exercise(command)
    result = _run_exercise(run)
    assert result.returncode == 0, (
        f"{run!r} (for {command!r}) failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


# --- coar_workflow.summary on a small fake run -------------------------------------------


def _fake_run(root: Path) -> None:
    def csv(path, text):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text).lstrip())

    def js(path, data):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(json.dumps(data, indent=2, sort_keys=True))

    csv(
        "eval/digits/summary.csv",
        """
        method,alpha_test,mean_corr,ci_low,ci_high
        coar,0.15,0.900000,0.890000,0.910000
        coar,0.1,0.950000,0.940000,0.960000
        loo,0.15,0.700000,0.690000,0.710000
        loo,0.1,0.800000,0.790000,0.810000
        gp,0.15,0.300000,0.290000,0.310000
        gp,0.1,0.350000,0.340000,0.360000
        """,
    )
    csv(
        "eval/lm_heads/summary.csv",
        """
        method,alpha_test,mean_corr,ci_low,ci_high
        coar,0.1,0.930000,0.920000,0.940000
        loo,0.1,0.850000,0.840000,0.860000
        """,
    )
    csv(
        "figures/sample_efficiency_summary.csv",
        """
        solver,target_corr,m_full,m_needed,m_crossing_interpolated,fraction_of_full,m_near_quarter,corr_near_quarter,gap_near_quarter,setup
        least_squares,0.950000,1000,1000,,1.0,250,0.900000,-0.050000,digits
        lasso,0.950000,1000,500,450.0,0.5,250,0.940000,-0.010000,digits
        """,
    )
    js(
        "edits/noisy/errors/summary.json",
        {
            "setup": "noisy",
            "n_errors": 10,
            "n_fixed": 9,
            "fraction_fixed": 0.9,
            "median_k": 2.0,
            "median_train_change": -0.003,
            "median_test_change": 0.0,
            "median_val_change": -0.01,
            "n_components": 64,
        },
    )
    for c, k in ((3, 8), (0, 12)):
        js(
            f"edits/digits/forget/class{c}/summary.json",
            {
                "setup": "digits",
                "target_class": c,
                "k": k,
                "n_components": 32,
                **{
                    f"{s}_{m}_{w}": v
                    for s in ("val", "test")
                    for m, w, v in (
                        ("accuracy", "before", 0.99),
                        ("accuracy", "after", 0.9),
                        ("target_accuracy", "before", 1.0),
                        ("target_accuracy", "after", 0.0),
                        ("others_accuracy", "before", 0.99),
                        ("others_accuracy", "after", 0.97),
                    )
                },
            },
        )
    js(
        "edits/spurious/subpopulation/summary.json",
        {
            "setup": "spurious",
            "target_groups": "1,2",
            "k": 6,
            "n_components": 32,
            **{
                f"{s}_{m}_{w}": v
                for s in ("val", "test")
                for m in ("accuracy", "group_average_accuracy", "worst_group_accuracy")
                for w, v in (("before", 0.5), ("after", 0.75))
            },
        },
    )
    js(
        "edits/backdoor/backdoor/summary.json",
        {
            "setup": "backdoor",
            "k": 3,
            "n_components": 32,
            "fraction_ablated": 3 / 32,
            "test_paired_correlation_before": 0.2,
            "test_paired_correlation_after": 0.8,
            **{
                f"{s}_{kind}_accuracy_{w}": v
                for s in ("val", "test")
                for kind, w, v in (
                    ("clean", "before", 0.99),
                    ("clean", "after", 0.98),
                    ("triggered", "before", 0.0),
                    ("triggered", "after", 0.7),
                )
            },
        },
    )


FIGURES = {
    "fig1": {"title": "Evaluating Coar", "setups": ["digits"]},
    "figI1": {"title": "Coar on GPT-2 (appendix)", "setups": ["lm_heads"]},
    "fig2": {"title": "Fixing individual errors", "setups": ["noisy"], "experiment": "errors"},
    "fig3": {
        "title": "Selectively forgetting a class",
        "setups": ["digits"],
        "experiment": "forget",
    },
    "fig4": {
        "title": "Subpopulation robustness",
        "setups": ["spurious"],
        "experiment": "subpopulation",
    },
    "fig7": {"title": "Removing a backdoor", "setups": ["backdoor"], "experiment": "backdoor"},
}


def test_write_summary_on_a_fake_run(tmp_path):
    root = tmp_path / "results"
    _fake_run(root)
    files = summary_mod.summary_files(root)
    assert len(files) == 8
    path = summary_mod.write_summary(root, root / "SUMMARY.md", figures=FIGURES, name="results")
    first = path.read_bytes()
    # Deterministic: the same run gives the same bytes, whichever way the files are given.
    summary_mod.write_summary(root, path, files=reversed(files), figures=FIGURES, name="results")
    assert path.read_bytes() == first
    text = first.decode()
    assert str(tmp_path) not in text
    for heading in (
        "## Fig. 1: Evaluating Coar",
        "## Sample efficiency",
        "## Fig. I1",
        "## Fig. 2",
        "## Fig. 3",
        "## Fig. 4",
        "## Fig. 7: Removing a backdoor",
    ):
        assert heading in text
    assert text.index("## Fig. 1") < text.index("## Sample efficiency") < text.index("## Fig. I1")
    assert "| Coar | 0.900 [0.890, 0.910] | 0.950 [0.940, 0.960] |" in text
    assert "| digits | lasso | 0.950 | 500 of 1000 | 450 | 250 | 0.940 |" in text
    # Forget: classes in numeric order, before -> after, k per class.
    assert text.index("| 0 | 100.0 % -> 0.0 %") < text.index("| 3 | 100.0 % -> 0.0 %")
    table = summary_mod.readme_table(text)
    assert table.startswith(summary_mod.START) and table.endswith(summary_mod.END)
    assert "| Fig. 1, `digits`: mean correlation | Coar 0.900-0.950; best baseline LOO " in table
    assert "9 of 10 errors fixed (90.0 %); median k 2 of 64" in table
    assert "class 0 / 3: class accuracy 0.0 % / 0.0 %" in table and "k 12 / 8 of 32" in table
    assert "worst group 50.0 % -> 75.0 %" in table
    assert "triggered 0.0 % -> 70.0 %; clean 99.0 % -> 98.0 %; k 3 of 32" in table
    assert "lasso 500" in table
    # Without the figures table: every file still reported, by experiment.
    plain = summary_mod.render_summary(root)
    assert "## Coar-Edit: Removing a backdoor" in plain and "`lm_heads`" in plain


def test_summary_names_the_machine_of_the_steps_behind_it(tmp_path, monkeypatch):
    """Numbers move with the CPU that trained the models: SUMMARY.md says where its
    steps ran, from their provenance records (and says nothing when there are none)."""
    from importlib.metadata import version

    from test_provenance import step

    from coar_workflow.provenance import ProvenanceError, _cpu_model, sidecar_path

    root = tmp_path / "results"
    _fake_run(root)
    assert "Computed on" not in summary_mod.render_summary(root, figures=FIGURES)
    monkeypatch.chdir(tmp_path)
    files = [f.relative_to(tmp_path) for f in summary_mod.summary_files(root)]
    for file in files[1:]:  # each as a step would write it, with its record
        step(tmp_path, "summarize", [], str(file), (tmp_path / file).read_text())
    # One file without a record: the sentence would not speak for every step.
    assert "Computed on" not in summary_mod.render_summary(root, figures=FIGURES)
    step(tmp_path, "summarize", [], str(files[0]), (tmp_path / files[0]).read_text())
    text = summary_mod.render_summary(root, figures=FIGURES)
    torch = version("torch")  # as the record names it (the distribution, not torch.__version__)
    machine = f"CPU `{_cpu_model()}` ({os.cpu_count()} cores), device cpu, torch {torch}"
    assert f"Computed on {machine} (every step behind these files" in text
    assert text.index("Computed on") < text.index(summary_mod.START)  # not in the README table
    # A damaged record is named, not skipped.
    record = sidecar_path(tmp_path / files[0])
    record.write_text(record.read_text()[:40])
    with pytest.raises(ProvenanceError, match=str(files[0].name)):
        summary_mod.render_summary(root, figures=FIGURES)


def test_summary_command_updates_and_checks_a_readme(tmp_path, capsys):
    root = tmp_path / "results"
    _fake_run(root)
    assert summary_mod.main([str(root), "--write", "--name", "results"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{summary_mod.START}\nold\n{summary_mod.END}\n\nrest\n")
    assert summary_mod.main([str(root), "--readme", str(readme), "--check"]) == 1
    assert "-old" in capsys.readouterr().out
    assert summary_mod.main([str(root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n") and text.endswith("\n\nrest\n") and "old" not in text
    assert summary_mod.readme_table(root / "SUMMARY.md") in text
    assert summary_mod.main([str(root), "--readme", str(readme), "--check"]) == 0


def test_summary_refuses_unknown_files(tmp_path):
    root = tmp_path / "results"
    _fake_run(root)
    (root / "edits/x/unknown").mkdir(parents=True)
    (root / "edits/x/unknown/summary.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown Coar-Edit experiment"):
        summary_mod.render_summary(root)
    with pytest.raises(FileNotFoundError):
        summary_mod.render_summary(tmp_path / "empty")


def test_summary_inputs_of_the_embedded_default():
    """Rule summary reads every figure's summary file of config/mini.yaml, and each is a
    file that write_summary understands."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    paths = summary_mod.summary_inputs(config, "results/mini")
    assert "results/mini/eval/mini_digits/summary.csv" in paths
    assert "results/mini/figures/sample_efficiency_summary.csv" in paths
    assert "results/mini/edits/mini_digits/forget/class8/summary.json" in paths
    assert len(paths) == len(set(paths)) == 10
    evaluations, sample_efficiency, edits = summary_mod._classify(
        REPO / "results" / "mini", [REPO / p for p in paths]
    )
    assert sample_efficiency is not None
    assert sorted(evaluations) == ["mini_digits", "tiny_gpt2_heads", "tiny_gpt2_rows"]
    assert len(edits) == 4  # forget: one entry, three classes
    assert len(edits[("mini_digits", "forget")]) == 3
