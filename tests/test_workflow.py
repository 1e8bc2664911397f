"""The embedded default run by Snakemake in a temporary directory, with shrunk sizes."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from coar.attributions import Attributions
from coar.provenance import chain

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "config" / "mini.yaml"

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
        }
    }
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
def mini_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mini")
    small = write_yaml(workdir / "small.yaml", SMALL)
    result = snakemake(workdir, MINI, small)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, small


@pytest.mark.workflow
def test_mini_workflow_writes_summary_and_figure(mini_run):
    workdir, _ = mini_run
    results = workdir / "results" / "mini"
    summary = pd.read_csv(results / "eval" / "mini_digits" / "summary.csv")
    assert list(summary.columns) == ["method", "alpha_test", "mean_corr", "ci_low", "ci_high"]
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
        "sample_efficiency": 1,
        "sample_efficiency_figure": 1,
        "provenance": 2,
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
    assert numbers.mean_corr.between(-1, 1).all()
    summary = pd.read_csv(figures / "sample_efficiency_summary.csv")
    assert set(summary.solver) == {"least_squares", "ridge", "lasso"}


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
    with open(workflow_copy / "src" / "coar" / "plots.py", "a") as f:
        f.write("\n# changed\n")
    assert dry_run_with(workdir, snakefile, small) == {"fig1": 1, "provenance": 1, "all": 1}
    with open(workflow_copy / "src" / "coar" / "masks.py", "a") as f:
        f.write("\n# changed\n")
    assert dry_run_with(workdir, snakefile, small) == {
        "ablate": 2,
        "evaluation_outputs": 2,
        "gather": 1,
        "fit": 1,
        "evaluate": 1,
        "fig1": 1,
        "sample_efficiency": 1,
        "sample_efficiency_figure": 1,
        "provenance": 2,
        "all": 1,
    }


@pytest.mark.workflow
def test_script_change_reruns_its_rule_and_dependents(mini_run, workflow_copy):
    workdir, small = mini_run
    script = workflow_copy / "workflow" / "scripts" / "evaluate.py"
    os.utime(script)  # Snakemake watches a script's modification time
    assert dry_run_with(workdir, workflow_copy / "Snakefile", small) == {
        "evaluate": 1,
        "fig1": 1,
        "provenance": 1,
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
        [sys.executable, "-m", "coar.cli", "provenance", str(figure)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "rule      ablate (setup=mini_digits, shard=1)" in text
    # One git line for all steps, or one per step if the checkout changed during the run.
    assert re.search(r"^(git commit \(every step\):|    git      ) [0-9a-f]{40}", text, re.M)
    assert "WARNING" not in text


@pytest.mark.workflow
def test_report_holds_figures_captions_params_code_software_and_provenance(mini_run):
    workdir, small = mini_run
    result = snakemake(workdir, MINI, small, args=["--report", "report.zip"])
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        report = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
        provenance = archive.read(next(n for n in names if n.endswith("/fig1.txt"))).decode()
    assert any(n.endswith("/fig1.pdf") for n in names)
    assert "Figure 1, &quot;Evaluating Coar&quot;" in report  # the caption
    assert '"job_properties": {"rule": "fig1"' in report  # per-result rule and params
    assert "scatter_examples=[0]" in report and "coar/plots.py" in report
    assert "torch==2.14.1" in report  # each rule's pinned software environment
    assert provenance.startswith("Provenance of results/mini/figures/fig1.pdf")
    assert "packages (every step): python" in provenance
