"""The embedded default run by Snakemake in a temporary directory, with shrunk sizes."""

import base64
import doctest
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from report_browser import find_chromium, inspect_report

from coar.attributions import Attributions
from coar.components import conv_filters
from coar_replication import plots
from coar_replication.checkpoints import load_model
from coar_workflow import report_html
from coar_workflow.provenance import chain

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "config" / "mini.yaml"

# Coar-Edit setups and example sets, shrunk like mini_digits.
EDIT_SMALL = {
    "model": {"planes": 8, "num_blocks": 2, "pool": 2},
    "train": {"epochs": 4},
    "ablation": {"masks_per_batch": 50},
}
SMALL = {
    "setups": {
        "mini_digits": {
            "model": {"planes": 8, "num_blocks": 2, "pool": 2},
            "train": {"epochs": 4},
            "ablation": {"n_masks": 600, "n_shards": 2, "masks_per_batch": 50},
            "evaluation": {
                "alpha_test": [0.15, 0.1],
                "n_masks": 40,
                "n_bootstrap": 200,
                "integration_steps": 8,
            },
            "examples": {"train_per_class": {"n": 4, "n_masks": 150}},
            "edits": {"forget": {"classes": [3], "k_max": 20}},
        },
        "mini_noisy": {
            **EDIT_SMALL,
            "examples": {
                "test_errors": {"n": 6, "seed": 0, "n_masks": 150},
                "train_reference": {"n": 20, "n_masks": 150},
            },
            "edits": {"errors": {"k_max": 10}},
        },
        "mini_spurious": {
            **EDIT_SMALL,
            "examples": {"train_per_group": {"n": 4, "n_masks": 150}},
            "edits": {"subpopulation": {"k_max": 20, "k_step": 5}},
        },
        "mini_backdoor": {
            **EDIT_SMALL,
            "examples": {
                "train_triggered": {"n": 12, "n_masks": 150},
                "train_clean": {"n": 12, "n_masks": 150},
            },
            "edits": {"backdoor": {"k_max": 4}},
        },
        **{
            name: {
                "ablation": {"n_masks": n_masks, "n_shards": 1, "masks_per_batch": 25},
                "evaluation": {"alpha_test": [0.1], "n_masks": 25, "n_bootstrap": 200},
            }
            for name, n_masks in (("tiny_gpt2_rows", 300), ("tiny_gpt2_heads", 100))
        },
    },
    "language_models": {
        "tiny_gpt2": {
            "corpus": {"n_train": 300, "n_eval": 12},
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 16, "n_inner": 32},
            "train": {"epochs": 2},
        }
    },
}


def snakemake(workdir: Path, *configs: Path, args=(), timeout=600):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        *map(str, configs),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = result.stdout.split("Job stats:")[-1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def mini_run_result(tmp_path_factory):
    """The shrunk embedded default run once: its directory, the shrinking config and the
    finished Snakemake process (its output: what a user sees in the terminal)."""
    workdir = tmp_path_factory.mktemp("mini")
    small = write_yaml(workdir / "small.yaml", SMALL)
    result = snakemake(workdir, MINI, small, timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, small, result


@pytest.fixture(scope="module")
def mini_run(mini_run_result):
    workdir, small, _ = mini_run_result
    return workdir, small


@pytest.mark.workflow
def test_the_run_ends_with_its_numbers_and_where_its_files_are(mini_run_result):
    workdir, small, result = mini_run_result
    terminal = result.stdout + result.stderr
    # Every rule runs a script: the default profile prints no "Shell command: None".
    assert "Shell command" not in terminal
    closing = terminal[terminal.index("Finished: the results are in results/mini/") :]
    results = workdir / "results" / "mini"
    summary = (results / "SUMMARY.md").read_text()
    assert "Headline numbers, from results/mini/SUMMARY.md" in closing
    for row in re.findall(r"^\| (Fig\. [^|]+) \|", summary, re.M):
        assert f"  {row.replace('`', '')}: " in closing  # each headline row, in the terminal
    figures = re.search(r"^Figures: (\S+) \((.+)\)$", closing, re.M)
    assert (workdir / figures[1]).resolve() == (results / "figures").resolve()
    assert sorted(figures[2].split(", ")) == sorted(p.name for p in results.glob("figures/*.pdf"))
    assert "Logs: results/mini/logs/" in closing
    report = re.search(r"^HTML report .*: (\S*snakemake --report .*)$", closing, re.M)[1]
    assert " --report results/mini/report.html " in report
    configs = [(workdir / c).resolve() for c in re.findall(r"--configfile (\S+)", report)]
    assert configs == [MINI.resolve(), small.resolve()]  # the run's own config files
    provenance = re.search(r"^Provenance of a figure: \S*coar provenance (\S+)$", closing, re.M)
    assert (workdir / provenance[1]).is_file()


@pytest.mark.workflow
def test_logs_read_as_prose_and_tables_with_labelled_progress(mini_run):
    logs = mini_run[0] / "results" / "mini" / "logs"
    progress = {
        "edit_errors/mini_noisy.log": "errors mini_noisy: fix each: 100%",
        "edit_forget/mini_digits/class3.log": "forget mini_digits, class 3: sweep over k: 100%",
        "edit_subpopulation/mini_spurious.log": "subpopulation mini_spurious: sweep over k: 100%",
        "edit_backdoor/mini_backdoor.log": "backdoor mini_backdoor: sweep over k: 100%",
        "gather/mini_noisy/test_errors.log": "gather mini_noisy, example set test_errors: 100%",
        "gather/mini_digits.log": "gather mini_digits, evaluation examples: 100%",
        "ablate/mini_digits/shard_1.log": (
            "ablate mini_digits, evaluation examples, shard 2 of 2 (masks: train): 100%"
        ),
        "ablate/mini_noisy/train_reference/shard_0.log": (
            "ablate mini_noisy, example set train_reference (masks: train): 100%"
        ),
    }
    for name, bar in progress.items():
        text = (logs / name).read_text()
        assert bar in text, (name, text[-2000:])
        if name.startswith("edit_"):
            assert "{'setup'" not in text  # the numbers as a table, not a raw dict
            assert re.search(r"^\|---\|", text, re.M), text[-2000:]


@pytest.mark.workflow
def test_mini_workflow_writes_summary_and_figure(mini_run):
    workdir, _ = mini_run
    results = workdir / "results" / "mini"
    summary = pd.read_csv(results / "eval" / "mini_digits" / "summary.csv")
    assert list(summary.columns) == [
        "method",
        "alpha_test",
        "mean_corr",
        "ci_low",
        "ci_high",
        "n_examples",
        "n_undefined",
    ]
    assert set(summary.method) == {"coar", "loo", "gp", "nc", "ii", "atp"}
    assert sorted(set(summary.alpha_test)) == [0.1, 0.15]
    at_train = summary[(summary.alpha_test == 0.1) & (summary.method == "coar")].iloc[0]
    assert at_train.ci_low <= at_train.mean_corr <= at_train.ci_high
    assert at_train.mean_corr > 0.5
    assert (results / "figures" / "fig1.pdf").read_bytes()[:4] == b"%PDF"

    attributions = Attributions.load(results / "attributions" / "mini_digits" / "coar.pt")
    assert attributions.weight.shape == (40, 360)
    assert attributions.component_names[0] == "conv1[0]"
    assert attributions.meta["alpha_train"] == 0.1 and attributions.meta["n_rows"] == 600
    assert np.isfinite(attributions.weight).all()
    assert "test accuracy" in (results / "logs" / "train" / "mini_digits.log").read_text()
    for method in ("loo", "gp", "nc", "ii", "atp"):
        baseline = Attributions.load(results / "attributions" / "mini_digits" / f"{method}.pt")
        assert baseline.weight.shape == (40, 360) and baseline.meta["method"] == method
    assert "checked against" in (results / "logs" / "evaluate" / "mini_digits.log").read_text()


@pytest.mark.workflow
def test_mini_workflow_attributes_the_tiny_gpt2(mini_run):
    workdir, _ = mini_run
    results = workdir / "results" / "mini"
    assert (results / "figures" / "figI1.pdf").read_bytes()[:4] == b"%PDF"
    metrics = json.loads((results / "lm" / "tiny_gpt2" / "metrics.json").read_text())
    assert metrics["eval"]["token_accuracy"] > 0.3  # far above chance (1 / vocabulary)
    for setup, n_components, methods in (
        ("tiny_gpt2_rows", 2 * (16 + 16 + 16 + 32), {"coar", "loo", "gp", "atp"}),
        ("tiny_gpt2_heads", 4, {"coar", "loo", "gp", "atp"}),
    ):
        attributions = Attributions.load(results / "attributions" / setup / "coar.pt")
        assert attributions.weight.shape == (n_components, 12)
        summary = pd.read_csv(results / "eval" / setup / "summary.csv")
        assert set(summary.method) == methods
        coar = summary[summary.method == "coar"].iloc[0]
        assert coar.alpha_test == 0.1 and coar.mean_corr > 0.3


@pytest.mark.workflow
def test_rerun_does_nothing(mini_run):
    workdir, small = mini_run
    result = snakemake(workdir, MINI, small, args=["--dry-run"])
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.workflow
def test_changing_alpha_train_reruns_only_its_dependents(mini_run):
    workdir, small = mini_run
    changed = write_yaml(
        workdir / "alpha.yaml", {"setups": {"mini_digits": {"ablation": {"alpha_train": 0.15}}}}
    )
    result = snakemake(workdir, MINI, small, changed, args=["--dry-run"])
    assert result.returncode == 0, result.stderr
    # the evaluation masks are redrawn too: they must avoid the new training masks
    assert planned_jobs(result) == {
        "ablate": 2,
        "evaluation_outputs": 2,
        "gather": 1,
        "fit": 1,
        "evaluate": 1,
        "fig1": 1,
        "ablate_examples": 1,
        "gather_examples": 1,
        "fit_examples": 1,
        "edit_forget": 1,
        "figure_forget": 1,
        "sample_efficiency": 1,
        "sample_efficiency_figure": 1,
        "provenance": 3,  # fig1, fig3 and the sample-efficiency figure
        "summary": 1,
        "all": 1,
    }


def bad_config_run(tmp_path, config):
    result = snakemake(tmp_path, write_yaml(tmp_path / "bad.yaml", config), args=["--dry-run"])
    assert result.returncode != 0
    assert not (tmp_path / "results").exists()
    return result.stdout + result.stderr


def test_out_of_range_alpha_is_named_before_any_job(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["setups"]["mini_digits"]["ablation"]["alpha_train"] = 1.5
    message = bad_config_run(tmp_path, config)
    assert "1.5" in message and "alpha_train" in message


def test_missing_key_is_named_before_any_job(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    del config["setups"]["mini_digits"]["evaluation"]["alpha_test"]
    message = bad_config_run(tmp_path, config)
    assert "'alpha_test' is a required property" in message


def test_misspelled_key_is_named(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["setups"]["mini_digits"]["ablation"]["n_mask"] = 10
    message = bad_config_run(tmp_path, config)
    assert "n_mask" in message


def test_figure_naming_an_unknown_setup_is_named(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["figures"]["fig1"]["setups"] = ["mini_digits", "setup_z"]
    message = bad_config_run(tmp_path, config)
    assert "figures.fig1.setups" in message and "setup_z" in message


@pytest.mark.workflow
def test_mini_workflow_writes_the_sample_efficiency_study(mini_run):
    workdir, _ = mini_run
    figures = workdir / "results" / "mini" / "figures"
    assert (figures / "sample_efficiency.pdf").stat().st_size > 0
    numbers = pd.read_csv(figures / "sample_efficiency.csv")
    assert set(numbers.solver) == {"least_squares", "ridge", "lasso"}
    assert numbers.m.max() == 600 and numbers.m.min() == 30  # fractions of n_masks
    # a mean over every example, or NaN where some example has no correlation
    assert (numbers.n_examples == 360).all()  # every test example of mini_digits
    assert (numbers.mean_corr.between(-1, 1) == (numbers.n_undefined == 0)).all()
    summary = pd.read_csv(figures / "sample_efficiency_summary.csv")
    assert set(summary.solver) == {"least_squares", "ridge", "lasso"}


EDIT_FIGURES = {"fig2": "errors", "fig3": "forget", "fig4": "subpopulation", "fig7": "backdoor"}


@pytest.mark.workflow
def test_edit_experiments_write_figures_tables_and_edited_models(mini_run):
    workdir, _ = mini_run
    results = workdir / "results" / "mini"
    for figure in EDIT_FIGURES:
        assert (results / "figures" / f"{figure}.pdf").read_bytes()[:4] == b"%PDF"
        assert len(pd.read_csv(results / "figures" / f"{figure}.csv")) > 0
    edits = results / "edits"
    for path in (
        edits / "mini_digits" / "forget" / "class3",
        edits / "mini_spurious" / "subpopulation",
        edits / "mini_backdoor" / "backdoor",
    ):
        checkpoint = torch.load(path / "edited_model.pt", weights_only=True)
        edit = checkpoint["edit"]
        assert edit["k"] == len(edit["ablated"]) == len(edit["ablated_names"])
        assert edit["criterion"] and edit["direction"] in ("raise", "lower")
        assert json.loads((path / "summary.json").read_text())["k"] == edit["k"]
        sweep = pd.read_csv(path / "sweep.csv")
        assert sweep.k.iloc[0] == 0 and edit["k"] in set(sweep.k)
        # The permanent edit: exactly the recorded components have zero weights.
        model = load_model(path / "edited_model.pt")
        spec = conv_filters(model)
        modules = dict(model.named_modules())
        zero = [
            i
            for g in spec.groups
            for i in range(g.offset, g.offset + g.size)
            if modules[g.module].weight[i - g.offset].abs().sum() == 0
        ]
        assert sorted(zero) == sorted(edit["ablated"])
    errors = pd.read_csv(edits / "mini_noisy" / "errors" / "per_example.csv")
    assert len(errors) == 6 and errors.fixed.dtype == bool
    attributions = Attributions.load(
        results / "attributions" / "mini_digits" / "train_per_class" / "coar.pt"
    )
    assert attributions.weight.shape == (40, 40)  # 4 training examples of each of 10 classes
    assert attributions.meta["examples"]["split"] == "train"


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def notebook_kernel(tmp_path_factory):
    """A Jupyter kernel spec of this Python (its ipykernel), in a directory of its own:
    whatever kernels the user has installed, the notebooks run here."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="coar-tests", prefix=str(prefix))
    return "coar-tests", prefix / "share" / "jupyter"


def notebook_client(notebook: Path, cwd: Path, kernel, monkeypatch, results=None):
    """A jupytext notebook converted, and the nbclient client that executes it as Jupyter
    does, from ``cwd``, with COAR_RESULTS=``results`` (None: unset)."""
    import jupytext
    from nbclient import NotebookClient

    name, jupyter_path = kernel
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws
    monkeypatch.delenv("COAR_SETUP", raising=False)
    if results is None:
        monkeypatch.delenv("COAR_RESULTS", raising=False)
    else:
        monkeypatch.setenv("COAR_RESULTS", str(results))
    nb = jupytext.read(notebook)
    client = NotebookClient(
        nb, kernel_name=name, timeout=300, resources={"metadata": {"path": str(cwd)}}
    )
    return nb, client


def execute_notebook(*args, **kwargs):
    """The executed notebook (`notebook_client`'s arguments)."""
    nb, client = notebook_client(*args, **kwargs)
    client.execute()
    return nb


def output_types(nb) -> set[str]:
    return {
        kind
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        for kind in output.get("data", {})
    }


@pytest.mark.workflow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_run_as_notebooks_from_their_folder(
    mini_run, notebook_kernel, notebook, monkeypatch
):
    """Opened in Jupyter from notebooks/ of a checkout with a run (no COAR_RESULTS): the
    results are found above, and the tables and plots are the cells' outputs."""
    workdir, _ = mini_run
    folder = workdir / "notebooks"
    folder.mkdir(exist_ok=True)
    nb = execute_notebook(notebook, folder, notebook_kernel, monkeypatch)
    assert sum(cell.cell_type == "markdown" for cell in nb.cells) >= 2
    assert {"text/html", "image/png"} <= output_types(nb), output_types(nb)


@pytest.mark.workflow
def test_a_notebook_reads_the_results_that_coar_results_names(
    mini_run, notebook_kernel, tmp_path, monkeypatch
):
    results = mini_run[0] / "results" / "mini"
    nb = execute_notebook(
        REPO / "notebooks" / "edit_forget.py", tmp_path, notebook_kernel, monkeypatch, results
    )
    assert {"text/html", "image/png"} <= output_types(nb)


def test_a_notebook_without_results_says_where_it_looked_in_one_line(
    notebook_kernel, tmp_path, monkeypatch
):
    from nbclient.exceptions import CellExecutionError

    folder = tmp_path / "notebooks"  # nothing above it holds results/mini
    folder.mkdir()
    notebook = REPO / "notebooks" / "edit_forget.py"
    expected = (
        f"ResultsNotFound: no results/mini/ in {folder} or any directory above it: run the "
        "workflow (make run) or set COAR_RESULTS to a run's results directory"
    )
    nb, client = notebook_client(notebook, folder, notebook_kernel, monkeypatch)
    with pytest.raises(CellExecutionError):
        client.execute()
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if "ename" in out]
    assert [error.traceback for error in errors] == [[expected]]  # one line, no traceback
    # As a script: the same line, and no traceback.
    script = subprocess.run(
        [sys.executable, str(notebook)], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert script.returncode == 1 and script.stderr.strip() == expected, script.stderr


def test_fig3_alone_needs_only_the_forgetting_branch(tmp_path):
    result = snakemake(tmp_path, MINI, args=["--dry-run", "results/mini/figures/fig3.pdf"])
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result) == {
        "prepare_digits": 1,
        "train": 1,
        "ablate_examples": 1,
        "gather_examples": 1,
        "fit_examples": 1,
        "edit_forget": 3,
        "figure_forget": 1,
    }


def test_edit_naming_an_unknown_example_set_is_named(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["setups"]["mini_digits"]["edits"]["forget"]["examples"] = "nope"
    message = bad_config_run(tmp_path, config)
    assert "setups.mini_digits.examples" in message and "nope" in message


# What reruns what (README, "Staleness"): a config param, a script, library code in
# src/coar, an input file's content. Code changes are made in a copy of the workflow, run
# against the finished mini run.
@pytest.fixture
def workflow_copy(tmp_path):
    copy = tmp_path / "code"
    copy.mkdir()
    for part in ("Snakefile", "workflow", "src", "profiles", "envs"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / part)
    return copy


def dry_run_with(workdir: Path, snakefile: Path, small: Path) -> dict[str, int]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--cores", "2"]
    cmd += ["--configfile", str(MINI), str(small), "--dry-run"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return planned_jobs(result)


@pytest.mark.workflow
def test_library_change_reruns_the_rules_that_use_it(mini_run, workflow_copy):
    workdir, small = mini_run
    snakefile = workflow_copy / "Snakefile"
    assert dry_run_with(workdir, snakefile, small) == {}  # an identical copy: nothing to do
    with open(workflow_copy / "src" / "coar_replication" / "plots.py", "a") as f:
        f.write("\n# changed\n")
    # Every figure draws with coar_replication.plots, no step that computes does.
    assert dry_run_with(workdir, snakefile, small) == {
        "fig1": 1,
        "figI1": 1,
        "figure_backdoor": 1,
        "figure_errors": 1,
        "figure_forget": 1,
        "figure_subpopulation": 1,
        "sample_efficiency_figure": 1,
        "provenance": 7,
        "summary": 1,  # it reads the sample-efficiency summary that figure's step writes
        "all": 1,
    }
    with open(workflow_copy / "src" / "coar" / "masks.py", "a") as f:
        f.write("\n# changed\n")
    # Mask sampling reaches most steps through the setup and edit modules; at least the
    # whole attribution chain of Figure 1 reruns.
    planned = dry_run_with(workdir, snakefile, small)
    assert {"ablate", "evaluation_outputs", "gather", "fit", "evaluate", "fig1"} <= set(planned)


@pytest.mark.workflow
def test_script_change_reruns_its_rule_and_dependents(mini_run, workflow_copy):
    workdir, small = mini_run
    script = workflow_copy / "workflow" / "scripts" / "evaluate.py"
    os.utime(script)  # Snakemake watches a script's modification time
    assert dry_run_with(workdir, workflow_copy / "Snakefile", small) == {
        "evaluate": 3,  # mini_digits and the two tiny GPT-2 setups
        "fig1": 1,
        "figI1": 1,
        "provenance": 2,
        "summary": 1,
        "all": 1,
    }


@pytest.mark.workflow
def test_input_content_change_reruns_dependents_and_a_touch_does_not(mini_run):
    workdir, small = mini_run
    summary = workdir / "results" / "mini" / "eval" / "mini_digits" / "summary.csv"
    original, stat = summary.read_bytes(), summary.stat()
    try:
        os.utime(summary)  # newer, same content: the recorded checksum still matches
        assert dry_run_with(workdir, REPO / "Snakefile", small) == {}
        summary.write_bytes(original + b"\n")
        assert dry_run_with(workdir, REPO / "Snakefile", small) == {
            "fig1": 1,
            "provenance": 1,
            "summary": 1,
            "all": 1,
        }
    finally:
        summary.write_bytes(original)
        os.utime(summary, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.workflow
def test_every_result_has_its_provenance(mini_run):
    workdir, _ = mini_run
    figure = workdir / "results" / "mini" / "figures" / "fig1.pdf"
    steps = chain(figure)
    assert all(s.record is not None for s in steps)  # every step recorded itself
    assert {s.record["rule"] for s in steps} >= {
        "fig1",
        "evaluate",
        "fit",
        "gather",
        "ablate",
        "evaluation_outputs",
        "train",
        "prepare_digits",
    }
    assert all(status == "ok" for s in steps for _, status in s.inputs)
    fig1 = steps[0].record
    assert fig1["git"]["commit"] and fig1["packages"]["torch"] and fig1["device"]["cpu"]
    text = subprocess.run(
        [sys.executable, "-m", "coar_workflow.cli", "provenance", str(figure)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "rule      ablate (setup=mini_digits, shard=1)" in text
    # One git line for all steps, or one per step if the checkout changed during the run.
    assert re.search(r"^(git commit \(every step\):|    git      ) [0-9a-f]{40}", text, re.M)
    assert "WARNING" not in text


@pytest.fixture(scope="module")
def mini_report(mini_run):
    """The single-file report of the finished run, and what it holds per result."""
    workdir, small = mini_run
    result = snakemake(workdir, MINI, small, args=["--report", "report.html"])
    assert result.returncode == 0, result.stderr
    # docutils' complaints about a caption or the description go to stderr only
    assert not re.search(r"\((ERROR|WARNING|SEVERE)/\d\)", result.stderr), result.stderr
    report = workdir / "report.html"
    text = report.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", text, re.S)[1])
    return report, text, results


def data_of(entry) -> bytes:
    """The bytes of a result embedded in the single-file report (a base64 data URI)."""
    header, _, data = entry["data_uri"].partition(",")
    assert header.endswith(";base64"), header
    return base64.b64decode(data)


def expected_figures() -> list[str]:
    """The figures of the embedded default: its config's, and the sample-efficiency one."""
    config = yaml.safe_load(MINI.read_text())
    names = list(config["figures"])
    return [*names, "sample_efficiency"] if config.get("sample_efficiency") else names


@pytest.mark.workflow
def test_report_holds_figures_captions_params_code_software_and_provenance(mini_run, mini_report):
    workdir, small = mini_run
    _, text, results = mini_report
    fig1 = results["results/mini/figures/fig1.png"]
    assert fig1["mime_type"] == "image/png" and data_of(fig1)[:4] == b"\x89PNG"
    assert fig1["labels"] == {"result": "figure"}
    assert "Figure 1, &quot;Evaluating Coar&quot;" in fig1["caption"]
    assert fig1["job_properties"]["rule"] == "fig1"  # per-result rule and params
    assert "scatter_examples=[0]" in text and "coar_replication/plots.py" in text
    assert "torch==2.14.1" in text  # each rule's pinned software environment
    assert "The pipeline" in text and "embedded default" in text  # the description
    page = data_of(results["results/mini/provenance/fig1.html"]).decode()
    provenance = html.unescape(page)
    assert "<pre>Provenance of results/mini/figures/fig1.pdf" in provenance
    assert "packages (every step): python" in provenance
    assert (workdir / "results/mini/provenance/fig1.txt").read_text() in provenance
    # every figure: its PNG, its numbers as a table (the CSV's rows) and its provenance
    for figure in expected_figures():
        kinds = {
            entry["labels"]["result"]
            for path, entry in results.items()
            if Path(path).stem.startswith(figure) or Path(path).stem == figure
        }
        assert {"figure", "numbers (table)", "provenance"} <= kinds, (figure, kinds)
    table = data_of(results["results/mini/figures/fig3_table.html"]).decode()
    rows = len(pd.read_csv(workdir / "results/mini/figures/fig3.csv"))
    assert table.count("<tr") == rows + 1  # a header row and one per CSV row


def chromium_or_skip() -> str:
    """Chromium's path; a skip without it, or a failure under CI (CI=true), where the
    system packages are installed (scripts/install-system-deps.sh)."""
    chromium = find_chromium()
    if chromium is None:
        reason = "Chromium is missing: run scripts/install-system-deps.sh as root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(f"REPORT NOT OPENED IN A BROWSER: {reason}")
    return chromium


@pytest.mark.parametrize("module", [report_html, plots], ids=lambda m: m.__name__)
def test_report_and_figure_helpers_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_missing_chromium_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "find_chromium", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="REPORT NOT OPENED"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but Chromium is missing"):
        chromium_or_skip()


@pytest.mark.workflow
def test_report_shows_every_figure_caption_table_and_provenance_in_a_browser(
    mini_run, mini_report, tmp_path
):
    chromium = chromium_or_skip()
    workdir, small = mini_run
    report, _, results = mini_report
    seen = inspect_report(report, chromium, tmp_path)
    assert "Coar and Coar-Edit, replicated as a Snakemake workflow" in seen["landing"]
    assert "Fig. 1: Evaluating Coar" in seen["landing"]  # the menu names the figures
    assert set(seen["results"]) == set(results)
    for path, shown in seen["results"].items():
        assert shown["caption_shown"], (path, shown["caption"])
        assert shown["mime"] in {"image/png", "text/html"}, path  # nothing download-only
        assert shown["shown"], path
        if shown["mime"] == "image/png":
            assert shown["width"] > 300 and shown["height"] > 200, (path, shown)
        elif "provenance" in path:
            assert "<pre>Provenance of results/mini/figures/" in shown["page"], path
        else:
            assert "<table" in shown["page"] and "<td>" in shown["page"], path
    images = {Path(p).stem for p, s in seen["results"].items() if s["mime"] == "image/png"}
    assert images == set(expected_figures())
