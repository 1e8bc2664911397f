"""The workflow and the code stay lint-clean (snakemake --lint, snakefmt, ruff)."""

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_snakemake_lint_is_clean():
    for config in ("config/mini.yaml", "config/config.yaml"):
        result = run(sys.executable, "-m", "snakemake", "--lint", "--configfile", config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    check = run(str(BIN / "ruff"), "check", "src", "workflow", "tests", "bench")
    assert check.returncode == 0, check.stdout
    fmt = run(str(BIN / "ruff"), "format", "--check", "src", "workflow/scripts", "tests", "bench")
    assert fmt.returncode == 0, fmt.stdout


def test_conda_env_pins_equal_requirements():
    requirements = {
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    env = yaml.safe_load((REPO / "envs" / "coar.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == requirements
    assert "python=3.11" in env["dependencies"]
