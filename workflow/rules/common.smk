import sys
from pathlib import Path

# Workflow scripts import the library from the repository even when it is not installed.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from coar.provenance import code_digests
from coar.store import run_id

RESULTS = config["results_dir"].rstrip("/")
SETUPS = config["setups"]


wildcard_constraints:
    setup="|".join(SETUPS) or "(?!)",
    shard=r"\d+",
    alpha=r"0\.\d+",
    figure=r"[A-Za-z0-9_]+",


def per_attempt(base):
    """A resource that grows with each retry: `base` on the first attempt, twice that
    on the second and so on (profiles/slurm resubmits failed jobs with more)."""
    return lambda wildcards, attempt: base * attempt


def code_of(script):
    """Checksums of a workflow script and of the coar modules it imports, directly or
    not. Passed as a param, so that Snakemake reruns the steps whose code changed: it
    watches a script's modification time itself, but not the library's code."""
    basedir = Path(workflow.basedir)
    return code_digests(basedir / "workflow" / "scripts" / script, basedir / "src")


def setup_config(wildcards):
    return SETUPS[wildcards.setup]


def training_run(wildcards):
    """Identity of the ablation run whose shards make up the component dataset."""
    cfg = SETUPS[wildcards.setup]["ablation"]
    return run_id(cfg["seed"], "train", cfg["alpha_train"], cfg["n_masks"])


def shard_paths(wildcards):
    n_shards = SETUPS[wildcards.setup]["ablation"]["n_shards"]
    return [
        f"{RESULTS}/ablations/{wildcards.setup}/shard_{k}.npz" for k in range(n_shards)
    ]


def evaluation_output_paths(wildcards):
    return [
        f"{RESULTS}/eval/{wildcards.setup}/true_outputs_alpha{alpha}.npz"
        for alpha in SETUPS[wildcards.setup]["evaluation"]["alpha_test"]
    ]


def scatter_outputs_path(setup):
    """True outputs at alpha_test = alpha_train, shown in Figure 1's scatter."""
    alpha = SETUPS[setup]["ablation"]["alpha_train"]
    return f"{RESULTS}/eval/{setup}/true_outputs_alpha{alpha}.npz"


def figure_setups(figure):
    setups = config["figures"][figure]["setups"]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise ValueError(
            f"config key figures.{figure}.setups names unknown setups {unknown}; "
            f"defined setups: {sorted(SETUPS)}"
        )
    return setups


def sample_efficiency_setups():
    setups = config.get("sample_efficiency", {}).get("setups", [])
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise ValueError(
            f"config key sample_efficiency.setups names unknown setups {unknown}; "
            f"defined setups: {sorted(SETUPS)}"
        )
    return setups


def all_targets():
    figures = [f"{RESULTS}/figures/{figure}.pdf" for figure in config["figures"]]
    if sample_efficiency_setups():
        figures.append(f"{RESULTS}/figures/sample_efficiency.pdf")
    # Each figure's provenance, as text for the report.
    provenance = [f"{RESULTS}/provenance/{Path(f).stem}.txt" for f in figures]
    return figures + provenance
