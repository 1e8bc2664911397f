"""The embedded default on a real single-node Slurm, through `snakemake --profile slurm`.

The test starts its own cluster (tests/slurm_cluster.py: munged, mariadbd, slurmdbd,
slurmctld, slurmd, two fake GPUs) and drives Snakemake exactly as a user would, from the
repository root with `--profile slurm`, plus the overlay tests/slurm-profile (fast
polling) and the site settings in COAR_SLURM_* environment variables. In order:

1. the whole embedded default runs; sacct shows every job, GPU rules with a GPU request
   of the configured model, the other rules without;
2. a changed fit parameter resubmits only the jobs that depend on it;
3. the attributions are asked for while they and their shards are still to be made;
   an ablation job cancelled mid-shard (scancel) leaves no shard file; Snakemake is
   stopped and run again, which resubmits only that shard and what depends on it, and
   the final attributions are bit-identical to those of the uninterrupted run before
   (same configuration, every shard remade).
   Snakemake is stopped by hand because the pinned plugin (2.8.0) takes sacct's
   "CANCELLED by <uid>" for a running job and would wait for it forever; a job that
   fails on its own (FAILED, TIMEOUT, OUT_OF_MEMORY) is resubmitted by the profile's
   retries instead.

It needs root and the Debian packages of scripts/install-slurm.sh; without them it is
skipped with the reason, unless COAR_REQUIRE_SLURM=1 (as in .ci/run) makes that a failure.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from coar.attributions import Attributions
from coar_workflow.provenance import chain, sidecar_path

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import ACCOUNT, GPU_TYPE, PARTITION, SYSTEM_CONF, SlurmCluster, missing_programs
from test_profiles import gpu_rules

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "config" / "mini.yaml"
GPU_RULES = gpu_rules()
RESULTS = Path("results/mini")
SHARDS = 2
# Shards long enough (a few seconds each on an idle 2-core machine) to cancel one midway.
CONFIG = {
    "setups": {
        "mini_digits": {
            "model": {"planes": 8, "num_blocks": 2, "pool": 2},
            "train": {"epochs": 2},
            "ablation": {"n_masks": 2400, "n_shards": SHARDS, "masks_per_batch": 40},
            "evaluation": {"alpha_test": [0.1], "n_masks": 40, "n_bootstrap": 200},
        }
    }
}
RUN_TIMEOUT = 900  # seconds, for one Snakemake invocation
# Figure 1 of the embedded default: every stage from data to figure, GPU rules included,
# without the edit and language-model branches (tested locally in test_workflow.py).
TARGETS = [str(RESULTS / "figures" / "fig1.pdf")]
SITE = {
    "COAR_SLURM_ACCOUNT": ACCOUNT,
    "COAR_SLURM_PARTITION": PARTITION,
    "COAR_SLURM_GPU_MODEL": GPU_TYPE,
}


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root"
    missing = missing_programs()
    if missing:
        return f"Slurm is missing ({', '.join(missing)}): run scripts/install-slurm.sh as root"
    if SYSTEM_CONF.exists():
        return f"{SYSTEM_CONF} exists: this machine has a Slurm of its own"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("COAR_REQUIRE_SLURM") == "1":
            pytest.fail(f"COAR_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(f"SLURM INTEGRATION TEST NOT RUN: {reason}")
    with SlurmCluster() as c:
        yield c
        for run in RUNS:  # a failed test can leave its Snakemake behind
            run.stop()


RUNS = []


class Run:
    """One `snakemake --profile slurm` invocation from the repository root, in the background."""

    def __init__(self, cluster, workdir: Path, *args: str, name: str, targets=TARGETS):
        RUNS.append(self)
        self.log = workdir / f"snakemake-{name}.log"
        self.cmd = [
            "timeout",
            "-k",
            "30",
            str(RUN_TIMEOUT),
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "slurm",
            "--profile",
            "tests/slurm-profile",
            "--directory",
            str(workdir),
            "--configfile",
            str(MINI),
            str(workdir / "slurm.yaml"),
            *args,
            "--",
            *targets,
        ]
        env = {**cluster.env, **SITE}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                self.cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self, expect_success: bool = True) -> str:
        try:
            self.process.wait(RUN_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        output = self.log.read_text()
        if expect_success:
            assert self.process.returncode == 0, f"{' '.join(self.cmd)}\n{output[-6000:]}"
        return output

    def stop(self, timeout: float = 60) -> None:
        """Interrupt Snakemake as Ctrl-C would: it cancels its jobs and exits."""
        if self.process.poll() is None:
            # `timeout` forwards the signal; Snakemake is its child.
            for child in subprocess.run(
                ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
            ).stdout.split():
                os.kill(int(child), signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


LOCAL_RULES = {"all", "provenance"}  # run by Snakemake itself, not submitted


def planned(cluster, workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs that a dry run of the same command would submit to Slurm."""
    run = Run(cluster, workdir, *args, "--dry-run", name="dry-run")
    table = run.wait().split("Job stats:")[1].split("total")[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    return {rule: n for rule, n in jobs.items() if rule not in LOCAL_RULES}


def counts(jobs) -> dict[str, int]:
    result = {}
    for job in jobs:
        result[job["rule"]] = result.get(job["rule"], 0) + 1
    return result


def sacct(cluster) -> list[dict]:
    fields = ["JobID", "Comment", "State", "ReqMem", "Timelimit", "ReqTRES", "Partition", "Account"]
    out = cluster.run("sacct", "-X", "-n", "-P", "-o", ",".join(fields)).stdout
    jobs = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
    for job in jobs:
        job["rule"] = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
    return jobs


def mem_mb(job) -> int:
    value = job["ReqMem"]
    return int(float(value[:-1]) * (1024 if value.endswith("G") else 1))


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    (workdir / "slurm.yaml").write_text(yaml.safe_dump(CONFIG))
    plan = planned(cluster, workdir)
    started = time.monotonic()
    Run(cluster, workdir, name="first").wait()
    print(f"first run on Slurm: {time.monotonic() - started:.0f} s")
    return workdir, plan


def test_embedded_default_completes_on_slurm(cluster, slurm_run):
    workdir, plan = slurm_run
    assert (workdir / RESULTS / "figures" / "fig1.pdf").read_bytes()[:4] == b"%PDF"
    jobs = sacct(cluster)
    assert {j["State"] for j in jobs} == {"COMPLETED"}, jobs
    assert counts(jobs) == plan  # every planned job went through Slurm, once
    assert {"prepare_digits", "train", "ablate", "gather", "fit", "fig1"} <= set(plan)
    for job in jobs:
        assert (job["Partition"], job["Account"]) == (PARTITION, ACCOUNT), job
        if job["rule"] in GPU_RULES:
            assert f"gres/gpu:{GPU_TYPE}=1" in job["ReqTRES"], job
        else:
            assert "gres/gpu" not in job["ReqTRES"], job
    # Each result records the Slurm job that made it.
    steps = {s.path: s.record for s in chain(workdir / RESULTS / "figures" / "fig1.pdf")}
    fig1_job = next(j["JobID"] for j in jobs if j["rule"] == "fig1")
    assert steps[str(RESULTS / "figures" / "fig1.pdf")]["slurm"]["job_id"] == fig1_job


def test_changed_parameter_resubmits_only_dependent_jobs(cluster, slurm_run):
    workdir, _ = slurm_run
    before = {j["JobID"] for j in sacct(cluster)}
    changed = {"setups": {"mini_digits": {"fit": {"val_fraction": 0.2}}}}
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    plan = planned(cluster, workdir, str(workdir / "changed.yaml"))
    assert {"fit", "evaluate", "fig1"} <= set(plan)
    assert not {"prepare_digits", "train", "ablate", "gather", "evaluation_outputs"} & set(plan)
    Run(cluster, workdir, str(workdir / "changed.yaml"), name="changed").wait()
    new = [j for j in sacct(cluster) if j["JobID"] not in before]
    assert counts(new) == plan


def _running_shard(workdir: Path) -> tuple[str, int] | None:
    """(Slurm job id, shard) of an ablation job that has started ablating, if any."""
    for log in sorted((workdir / RESULTS / "logs" / "ablate" / "mini_digits").glob("*.log")):
        text = log.read_text()
        if " rows " in text and "masks/s" not in text:  # started, not finished
            shard = int(re.fullmatch(r"shard_(\d+)\.log", log.name)[1])
            for slurm_log in (workdir / ".snakemake" / "slurm_logs" / "rule_ablate").rglob("*.log"):
                if f"wildcards: setup=mini_digits, shard={shard}\n" in slurm_log.read_text():
                    return slurm_log.stem, shard
    return None


def test_cancelled_ablation_reruns_that_shard_bit_identically(cluster, slurm_run):
    workdir, _ = slurm_run
    attributions = workdir / RESULTS / "attributions" / "mini_digits" / "coar.pt"
    uninterrupted = Attributions.load(attributions)
    for stale in [
        *(workdir / RESULTS / "logs" / "ablate").rglob("*.log"),
        *(workdir / ".snakemake" / "slurm_logs" / "rule_ablate").rglob("*.log"),
    ]:
        stale.unlink()  # so that only this run's progress is read below
    # The attributions are asked for while they, the component dataset and the shards are
    # still to be made, as in a first run. (Snakemake remakes a missing intermediate file
    # only for an output that needs it: with `--forcerun ablate` and the old results in
    # place, the shards that finish equal the old ones, the profile's checksums see no
    # change, nothing needs the cancelled shard, and the rerun rightly does nothing.)
    shutil.rmtree(workdir / RESULTS / "ablations" / "mini_digits")
    for made in (attributions, sidecar_path(attributions)):
        made.unlink()
    changed = str(workdir / "changed.yaml")
    asked = [str(attributions.relative_to(workdir))]
    run = Run(cluster, workdir, changed, name="cancelled", targets=asked)

    deadline = time.monotonic() + RUN_TIMEOUT
    while (target := _running_shard(workdir)) is None:
        assert run.process.poll() is None, run.log.read_text()[-5000:]
        assert time.monotonic() < deadline, "no ablation job started"
        time.sleep(0.2)
    job_id, shard = target
    cluster.run("scancel", job_id)
    shard_file = workdir / RESULTS / "ablations" / "mini_digits" / f"shard_{shard}.npz"
    assert not shard_file.exists(), "the shard finished before it was cancelled"
    while not (state := _state(cluster, job_id)).startswith("CANCELLED"):
        assert time.monotonic() < deadline, f"job {job_id} still {state} after scancel"
        time.sleep(0.5)
    # Let the other shards finish and Snakemake record them, then stop it (Ctrl-C).
    finished = re.compile(r"^Finished jobid: \d+ \(Rule: ablate\)", re.M)
    while len(finished.findall(run.log.read_text())) < SHARDS - 1:
        assert run.process.poll() is None, run.log.read_text()[-5000:]
        assert time.monotonic() < deadline, "the other shards did not finish"
        time.sleep(0.5)
    run.stop()
    assert not shard_file.exists(), "a cancelled shard must leave no file that looks finished"

    cancelled_run = {j["JobID"] for j in sacct(cluster)}
    Run(cluster, workdir, changed, name="rerun", targets=asked).wait()
    rerun_jobs = [j for j in sacct(cluster) if j["JobID"] not in cancelled_run]
    ablate = [j for j in rerun_jobs if j["rule"] == "ablate"]
    assert [j["Comment"] for j in ablate] == [f"rule_ablate_wildcards_mini_digits_{shard}"]

    rerun = Attributions.load(attributions)
    assert rerun.weight.dtype == uninterrupted.weight.dtype
    assert rerun.weight.tobytes() == uninterrupted.weight.tobytes()
    assert np.asarray(rerun.bias).tobytes() == np.asarray(uninterrupted.bias).tobytes()
    # The shard's provenance names the job that finally made it.
    record = {s.path: s.record for s in chain(attributions)}
    shard_record = record[str(RESULTS / "ablations" / "mini_digits" / f"shard_{shard}.npz")]
    assert shard_record["slurm"]["job_id"] == ablate[0]["JobID"]


def _state(cluster, job_id: str) -> str:
    out = cluster.run("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State").stdout.split("\n")
    return out[0].strip()
