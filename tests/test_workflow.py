"""The embedded default run by Snakemake in a temporary directory, with shrunk sizes."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from coar.attributions import Attributions

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
def test_mini_workflow_attributes_the_tiny_gpt2(mini_run):
    workdir, _ = mini_run
    results = workdir / "results" / "mini"
    assert (results / "figures" / "figI1.pdf").read_bytes()[:4] == b"%PDF"
    metrics = json.loads((results / "lm" / "tiny_gpt2" / "metrics.json").read_text())
    assert metrics["eval"]["token_accuracy"] > 0.3  # far above chance (1 / vocabulary)
    for setup, n_components, methods in (
        ("tiny_gpt2_rows", 2 * (16 + 16 + 16 + 32), {"coar", "loo", "gp", "atp"}),
        ("tiny_gpt2_heads", 4, {"coar", "loo"}),
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
        "sample_efficiency": 1,
        "sample_efficiency_figure": 1,
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
