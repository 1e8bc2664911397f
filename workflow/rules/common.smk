import re
import sys
from pathlib import Path

# Workflow scripts import the library from the repository even when it is not installed.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from coar_workflow.config import (
    ALPHA_PATTERN,
    ConfigError,
    alpha_label,
    check_workflow_config,
)
from coar_workflow.provenance import code_digests
from coar_replication.selections import MODEL_SELECTIONS
from coar.store import run_id

# The config beyond what the Snakefile's schema check sees (coar_workflow.config): a key
# given twice in a config file, numbers that YAML 1.1 reads as text (1e-3: made numbers
# here), values out of the range that other values allow (n_shards <= n_masks, the
# scatter example, positions, classes, names of setups, example sets and splits). A
# fault stops the workflow here, before any job, naming key, value, file and line.
try:
    check_workflow_config(
        config,
        workflow.configfiles,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        overrides=workflow.config_settings.config,
        base=workflow.basedir,
    )
except ConfigError as err:
    sys.exit(str(err))

RESULTS = config["results_dir"].rstrip("/")
SETUPS = config["setups"]


def setup_pattern(names):
    """A {setup} wildcard constraint: exactly these setup names (none: matches nothing)."""
    return "|".join(names) or "(?!)"


# Which rules make a setup's model and data files, by its kind: each producing rule
# constrains {setup} to its own kind's names (no ruleorder needed).
# - a `source` (the paper's published models): prepare_examples, import_model;
REAL_SETUPS = [name for name, cfg in SETUPS.items() if "source" in cfg]
# - zero-shot CLIP (typographic attacks): typographic_setup (clip_setups.smk);
CLIP_SETUPS = [name for name, cfg in SETUPS.items() if cfg["kind"] == "clip_zero_shot"]
# - causal language models: lm_setup (lm.smk);
LM_SETUPS = [name for name, cfg in SETUPS.items() if cfg["kind"] == "causal_lm"]
# - every other setup (the embedded default's digits): prepare_digits, train.
TRAINED_SETUPS = [
    name for name in SETUPS if name not in {*REAL_SETUPS, *CLIP_SETUPS, *LM_SETUPS}
]
REAL_SETUP_PATTERN = setup_pattern(REAL_SETUPS)
# The figures that evaluate attributions (Fig. 1 and the appendix's GPT-2 Fig. I1): every
# figure of the config without an edit experiment; one rule each (figures.smk).
EVALUATION_FIGURES = [
    name for name, cfg in config["figures"].items() if "experiment" not in cfg
]


wildcard_constraints:
    setup="|".join(SETUPS) or "(?!)",
    shard=r"\d+",
    alpha=ALPHA_PATTERN,
    figure=r"[A-Za-z0-9_]+",


def per_attempt(base):
    """A resource that grows with each retry: `base` on the first attempt, twice that
    on the second and so on (profiles/slurm resubmits failed jobs with more)."""
    return lambda wildcards, attempt: base * attempt


def data_memory(base):
    """mem_mb of a job that loads its setup's data (input `data`): `base` plus a multiple
    of the data file's size, grown per attempt like `per_attempt`. The paper setups'
    files hold uint8 images (setup B: ~16.5 GB) that a job turns into float32 where it
    runs: 4 bytes per pixel in host memory on the CPU; on a GPU, only the uint8 copy
    passes through the host."""
    per_data_mb = 5 if config["device"] == "cpu" else 1.5

    def mem_mb(wildcards, input, attempt):
        data = Path(input.data)
        data_mb = data.stat().st_size / 2**20 if data.exists() else 0
        return int((base + per_data_mb * data_mb) * attempt)

    return mem_mb


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
        f"{RESULTS}/eval/{wildcards.setup}/true_outputs_alpha{alpha_label(alpha)}.npz"
        for alpha in SETUPS[wildcards.setup]["evaluation"]["alpha_test"]
    ]


def evaluation_methods(wildcards):
    """Coar first, then the baselines named in the setup's evaluation config."""
    return ["coar", *setup_config(wildcards)["evaluation"]["baselines"]]


def scatter_outputs_path(setup):
    """True outputs at alpha_test = alpha_train, shown in Figure 1's scatter."""
    alpha = alpha_label(SETUPS[setup]["ablation"]["alpha_train"])
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
    targets = [f"{RESULTS}/figures/{figure}.pdf" for figure in config["figures"]]
    if sample_efficiency_setups():
        targets.append(f"{RESULTS}/figures/sample_efficiency.pdf")
    # Each figure's provenance, as text and as the report's page of it.
    provenance = [
        f"{RESULTS}/provenance/{Path(f).stem}.{suffix}"
        for f in targets
        for suffix in ("txt", "html")
    ]
    return [*targets, *provenance, *published_targets()]


# --- The report (snakemake --report): one category per figure --------------------------
def figure_heading(figure):
    """The report's name for a figure: 'Fig. 1: Evaluating Coar' (config title)."""
    if figure == "sample_efficiency":
        return "Sample efficiency: how many ablations each solver needs"
    if figure.startswith("published_"):
        return f"Published attributions: {figure[len('published_'):]}"
    number = re.fullmatch(r"fig([A-Za-z]*\d+)", figure)
    label = f"Fig. {number[1]}" if number else figure
    title = config["figures"].get(figure, {}).get("title")
    return f"{label}: {title}" if title else label


def figure_category(figure=None):
    """report(category=...) of a figure's results: of `figure`, or of the {figure}
    wildcard if none is given."""
    if isinstance(figure, str):
        return figure_heading(figure)
    return lambda wildcards: figure_heading(wildcards.figure)


def result_label(kind):
    """report(labels=...): what a result of a figure's category is."""
    return {"result": kind}


# --- The paper's setups: downloads, prepared data, published attributions -------------
# (rules in download.smk, real_setups.smk, published.smk)
DOWNLOADS = config.get("downloads", {})
DOWNLOADS_DIR = config.get("downloads_dir", "resources").rstrip("/")
PREPARED_BETONS = {
    "cifar10_test": f"{RESULTS}/data/cifar10_test.beton",
    "cifar10_train": f"{RESULTS}/data/cifar10_train.beton",
    "imagenet_val": f"{RESULTS}/data/imagenet_val.beton",
    "imagenet_train": f"{RESULTS}/data/imagenet_train.beton",
}
# The user's ImageNet folders (rules check_imagenet, prepare_imagenet).
IMAGENET_PATTERN = "imagenet_val|imagenet_train"


def clip_config(wildcards):
    return SETUPS[wildcards.setup]["clip"]


def download_path(name):
    if name not in DOWNLOADS:
        raise ValueError(
            f"file {name!r} is used by a setup but not listed under config key downloads "
            f"(listed: {sorted(DOWNLOADS)})"
        )
    return f"{DOWNLOADS_DIR}/{name}"


def download_rule_name(name):
    safe_name = re.sub(r"\W", "_", name)
    return f"download_{safe_name}"


def pinned_checksum(entry):
    """Snakemake's ensure() takes one full digest: sha256 if pinned, else md5."""
    if entry.get("sha256"):
        return {"sha256": entry["sha256"]}
    if entry.get("md5"):
        return {"md5": entry["md5"]}
    return {}


def split_betons(wildcards):
    """Split name -> the beton its examples come from (prepared here or downloaded)."""
    splits = SETUPS[wildcards.setup]["source"]["splits"]
    return {
        split: (
            PREPARED_BETONS[src["beton"]]
            if "beton" in src
            else download_path(src["download"])
        )
        for split, src in splits.items()
    }


def model_download(wildcards):
    return download_path(SETUPS[wildcards.setup]["source"]["model"]["download"])


def published_config(wildcards):
    source = SETUPS[wildcards.setup].get("source", {})
    published = source.get("published_attributions", {})
    if wildcards.split not in published:
        raise ValueError(
            f"setup {wildcards.setup!r} has no published attributions for split "
            f"{wildcards.split!r} (config key setups.{wildcards.setup}.source."
            "published_attributions)"
        )
    return published[wildcards.split]


def published_targets():
    """The comparison of every setup with published test attributions in a figure that
    evaluates attributions (Fig. 1): the editing figures' models would need their own
    full ablation runs for it."""
    setups = {
        s
        for figure, cfg in config["figures"].items()
        if "experiment" not in cfg
        for s in figure_setups(figure)
    }
    return [
        path
        for setup in sorted(setups)
        if "test" in SETUPS[setup].get("source", {}).get("published_attributions", {})
        for path in (
            f"{RESULTS}/eval/{setup}/published_comparison.csv",
            f"{RESULTS}/figures/published_{setup}.pdf",
            f"{RESULTS}/figures/published_{setup}.png",
        )
    ]
