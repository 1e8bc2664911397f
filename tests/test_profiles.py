"""profiles/slurm: `--profile slurm` resolves from the repository root, GPU rules (and
only they) ask for a GPU, site settings come from COAR_SLURM_* variables."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
import yte

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def profile(env: dict | None = None) -> dict:
    saved = dict(os.environ)
    try:
        os.environ.update(env or {})
        with open(PROFILE) as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gpu_rules() -> set[str]:
    return {rule for rule, res in profile()["set-resources"].items() if res.get("gpu")}


def workflow_rules() -> dict[str, str]:
    """Rule name -> its text, from workflow/rules/*.smk; a rule made with `use rule A as B`
    gets A's text followed by its own changes."""
    rules, derived = {}, []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule |use rule )", smk.read_text()):
            if m := re.match(r"rule (\w+):", block):
                rules[m[1]] = block
            elif m := re.match(r"use rule (\w+) as (\w+) with:", block):
                derived.append((m[1], m[2], block))
    for parent, name, block in derived:
        rules[name] = rules[parent] + block
    return rules


def test_every_rule_that_takes_a_device_asks_for_a_gpu():
    rules = workflow_rules()
    takes_device = {name for name, text in rules.items() if re.search(r"\bdevice=", text)}
    assert takes_device <= gpu_rules(), takes_device - gpu_rules()
    assert gpu_rules() <= set(rules), gpu_rules() - set(rules)


def test_site_settings_come_from_the_environment():
    assert profile()["default-resources"] == {}
    assert all(res == {"gpu": 1} for res in profile()["set-resources"].values())
    site = profile(
        {
            "COAR_SLURM_ACCOUNT": "proj1",
            "COAR_SLURM_PARTITION": "cpu",
            "COAR_SLURM_GPU_PARTITION": "gpu",
            "COAR_SLURM_GPU_MODEL": "a100",
        }
    )
    assert site["default-resources"] == {"slurm_account": "proj1", "slurm_partition": "cpu"}
    for res in site["set-resources"].values():
        assert res == {"gpu": 1, "gpu_model": "a100", "slurm_partition": "gpu"}


def test_named_profile_resolves_from_the_repository_root():
    assert (REPO / "slurm").resolve() == PROFILE.parent


def test_dry_run_through_the_profile_asks_for_gpus_only_for_gpu_rules(tmp_path):
    """The shape of `snakemake --profile slurm -n <target>`, on the embedded default."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "slurm",
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "mini.yaml"),
            "-n",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COAR_SLURM_GPU_MODEL": "a100"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # each job: "rule <name>:" and its indented lines (input, output, ..., resources)
    jobs = re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n)+)", result.stdout, re.M)
    # The embedded default has no CLIP setup, so it plans no typographic edit.
    assert {rule for rule, _ in jobs} >= gpu_rules() - {"edit_typographic"}
    for rule, text in jobs:
        resources = re.search(r"resources: (.*)", text)[1]
        if rule in gpu_rules():
            assert "gpu=1" in resources and "gpu_model=a100" in resources, (rule, resources)
        else:
            assert "gpu" not in resources, (rule, resources)


def test_memory_requests_grow_with_the_setup_data(tmp_path):
    """A job that loads its setup's data asks for memory in proportion to the data file
    (setup B's is ~16.5 GB), more when it runs on the CPU (float32 images in host memory)."""
    data = tmp_path / "results" / "mini" / "data" / "mini_digits.npz"
    model = tmp_path / "results" / "mini" / "models" / "mini_digits.pt"
    data.parent.mkdir(parents=True)
    model.parent.mkdir(parents=True)
    with open(data, "wb") as f:
        f.truncate(4 * 2**30)  # sparse: 4 GiB on paper, nothing on disk
    model.touch()
    later = data.stat().st_mtime + 60
    os.utime(model, (later, later))  # newer than the data: only the shard is planned
    requests = {}
    for device in ("cuda", "cpu"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--directory",
                str(tmp_path),
                "--configfile",
                str(REPO / "config" / "mini.yaml"),
                "--config",
                f"device={device}",
                "-n",
                "results/mini/ablations/mini_digits/shard_0.npz",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.findall(r"^rule (\w+):", result.stdout, re.M) == ["ablate"], result.stdout
        requests[device] = int(re.search(r"mem_mb=(\d+)", result.stdout)[1])
    assert requests == {"cuda": 2000 + 1.5 * 4096, "cpu": 2000 + 5 * 4096}


DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"

TOUCH_SNAKEFILE = """
rule all:
    input: "report.txt"

rule big:
    output: "big.bin"
    run:
        with open(output[0], "wb") as f:
            f.write(b"x" * (2 << 20))

rule report:
    input: "big.bin"
    output: "report.txt"
    shell: "wc -c {input} > {output}"
"""


def touched_big_file_reruns(tmp_path, *args) -> bool:
    """Run a two-rule workflow whose input is a 2 MiB file, touch that file, and say
    whether a dry run then plans to rerun its consumer."""
    (tmp_path / "Snakefile").write_text(TOUCH_SNAKEFILE)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    big = tmp_path / "big.bin"
    os.utime(big, ns=(big.stat().st_atime_ns, big.stat().st_mtime_ns + 10**10))
    dry = subprocess.run(
        [*cmd, "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert dry.returncode == 0, dry.stderr
    return "Nothing to be done" not in dry.stdout + dry.stderr


def test_a_touched_file_over_1_mb_with_the_same_content_reruns_nothing_with_the_profile(
    tmp_path,
):
    # docs/reproducibility.md: true up to the profile's max-checksum-file-size ...
    limit = yaml.safe_load(DEFAULT_PROFILE.read_text())["max-checksum-file-size"]
    assert limit == "1GB"
    with_profile = tmp_path / "with_profile"
    with_profile.mkdir()
    assert not touched_big_file_reruns(with_profile, "--max-checksum-file-size", limit)
    # ... and not with Snakemake's own 1 MB, which the docs say too
    without = tmp_path / "without"
    without.mkdir()
    assert touched_big_file_reruns(without)
