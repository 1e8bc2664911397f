"""Config faults are refused before any job runs, naming file, line, key, value and what
to do (coar_workflow.config, called by workflow/rules/common.smk): keys given twice,
YAML syntax errors, numbers YAML 1.1 reads as text, alphas the file names must carry,
and values out of the range other values allow."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from coar_workflow.config import (
    ALPHA_PATTERN,
    MIN_SAMPLE_EFFICIENCY_ROWS,
    Checker,
    ConfigError,
    Sources,
    alpha_label,
    check_workflow_config,
    read_config_file,
)

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "config" / "mini.yaml"
PAPER = REPO / "config" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


# -- dry runs of the workflow (as in tests/test_workflow.py) -------------------------------
def snakemake(workdir: Path, *configs: Path, args=(), timeout=600):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--cores", "2", "--configfile", *map(str, configs)]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=workdir
    )


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = result.stdout.split("Job stats:")[-1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


def refused(tmp_path, config_path: Path) -> str:
    """A dry run with this config stops before any job, with a message and no traceback."""
    result = snakemake(tmp_path, config_path, args=["--dry-run"])
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    assert not (tmp_path / "results").exists()
    assert "Job stats" not in message and "Building DAG" not in message
    assert "Traceback" not in message and 'File "' not in message, message
    return message


def mini_text(*replacements) -> str:
    """config/mini.yaml as text, each (old, new) replaced once (asserted present)."""
    text = MINI.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return lines[nth - 1]


# -- direct checks (no Snakemake) ------------------------------------------------------------
def check(config: dict, *files: Path, overrides=None, results_dir="results/none") -> list:
    return check_workflow_config(
        config, files, SCHEMA, overrides=overrides, results_dir=results_dir
    )


def problems_of(config: dict, tmp_path, name="bad.yaml", results_dir=None) -> str:
    """The ConfigError message for `config`, written to a file in tmp_path first."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        check(config, path, results_dir=results_dir or tmp_path / "results")
    return str(err.value)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_shipped_configs_pass_every_check():
    for path in (MINI, PAPER):
        config = load(path)
        original = copy.deepcopy(config)
        assert check(config, path) == []  # nothing to convert, nothing refused
        assert config == original


# 1. A key given twice.
def test_duplicate_key_is_refused_naming_file_line_and_key(tmp_path):
    text = mini_text(("      n_shards: 4\n", "      n_shards: 4\n      n_shards: 7\n"))
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    message = refused(tmp_path, path)
    first, second = line_of(text, "n_shards: 4"), line_of(text, "n_shards: 7")
    assert f"dup.yaml, line {second}" in message
    assert "setups.mini_digits.ablation.n_shards is given twice" in message
    assert f"lines {first} (4) and {second} (7)" in message and "Delete the one" in message


def test_duplicates_in_flow_mappings_and_lists_are_found_but_merge_keys_are_not(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "base: &base {seed: 0, n: 1}\n"
        "sets:\n"
        "  - {<<: *base, n: 2}\n"  # a merge key overridden: fine
        "  - {split: a, split: b}\n"
    )
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert str(err.value).count("given twice") == 1
    assert "line 4: key sets[1].split is given twice" in str(err.value)
    assert "(a) and 4 (b)" in str(err.value)
    # the shipped configs use anchors and merge keys: no false alarm
    assert read_config_file(MINI).data == load(MINI)


# 2. A YAML syntax error.
def test_yaml_syntax_error_is_located_by_our_reader(tmp_path):
    text = mini_text(("      seed: 1\n", "      seed: [1\n"))
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert re.search(r"broken\.yaml, line \d+, column \d+: YAML syntax error", str(err.value))
    assert "Fix the file there" in str(err.value)
    # Snakemake reads --configfile files before the workflow's code runs, so a dry run
    # stops with Snakemake's own message (no file, no line), and runs nothing; the
    # command-line reader locates the error.
    result = snakemake(tmp_path, path, args=["--dry-run"])
    assert result.returncode != 0 and not (tmp_path / "results").exists()
    located = subprocess.run(
        [sys.executable, "-m", "coar_workflow.config", str(path), str(MINI)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert located.returncode == 1
    assert re.search(r"broken\.yaml, line \d+, column \d+", located.stderr)
    assert f"{MINI}: readable, no key given twice" in located.stdout


def test_tab_indentation_is_located(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("results_dir: results\nsetups:\n\tmini: {}\n")
    with pytest.raises(ConfigError, match=r"tabs\.yaml, line 3, column 1: YAML syntax error"):
        read_config_file(path)


# 3. Numbers YAML 1.1 reads as text.
def test_exponent_without_a_dot_is_read_as_a_number(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text(mini_text(("      lr: 0.05\n", "      lr: 1e-3\n")))
    result = snakemake(tmp_path, path, args=["--dry-run"])
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result)["train"] == 4


def test_number_text_becomes_numbers_and_is_then_range_checked(tmp_path):
    text = mini_text(
        ("      lr: 0.05\n", "      lr: 1e-3\n"),
        ("      n_masks: 5000\n", "      n_masks: 5e3\n"),
        ("      weight_decay: 0.0005\n", "      weight_decay: 5.0e-4\n"),  # YAML 1.1 too
        ("  max_iter: 200\n", "  max_iter: 2.0e2\n"),  # no sign in the exponent: text
    )
    path = tmp_path / "numbers.yaml"
    path.write_text(text)
    config = yaml.safe_load(text)
    assert config["setups"]["mini_digits"]["train"]["lr"] == "1e-3"  # YAML 1.1
    converted = check(config, path)
    digits = config["setups"]["mini_digits"]
    assert digits["train"]["lr"] == 0.001 and isinstance(digits["train"]["lr"], float)
    assert digits["ablation"]["n_masks"] == 5000 and type(digits["ablation"]["n_masks"]) is int
    assert digits["train"]["weight_decay"] == 0.0005
    assert config["sample_efficiency"]["fit"]["max_iter"] == 200
    assert {p[-1] for p, _, _ in converted} == {"lr", "n_masks", "max_iter"}
    # an integral float where an integer is wanted becomes the integer (range() needs it)
    config = load(MINI)
    config["setups"]["mini_digits"]["ablation"]["n_shards"] = 4.0
    check(config, MINI)
    assert type(config["setups"]["mini_digits"]["ablation"]["n_shards"]) is int


@pytest.mark.parametrize(
    ("line", "replacement", "expected"),
    [
        ("      lr: 0.05\n", "      lr: fast\n", "'fast' is not of type 'number'. Write a number"),
        ("      lr: 0.05\n", "      lr: -1e-3\n", "-0.001 is less than or equal to the minimum"),
        ("      n_masks: 5000\n", "      n_masks: 2.5e3x\n", "is not of type 'integer'"),
        ("      n_masks: 5000\n", "      n_masks: 1.5\n", "1.5 is not of type 'integer'"),
    ],
)
def test_text_that_is_no_number_is_refused_by_key_file_and_line(
    tmp_path, line, replacement, expected
):
    text = mini_text((line, replacement))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        check(yaml.safe_load(text), path)
    key = "train.lr" if "lr" in line else "ablation.n_masks"
    assert f"setups.mini_digits.{key} = " in str(err.value)
    assert f"bad.yaml, line {line_of(text, replacement.strip())}" in str(err.value)
    assert expected in str(err.value)


# 4. Alphas in file names.
def test_every_alpha_gives_a_file_name_the_wildcard_matches():
    for alpha in (0.1, 0.125, 0.0375, 0.00001, 1e-9, 0.5, 0.9999999, 1 / 3, 0.1 + 0.2):
        label = alpha_label(alpha)
        assert re.fullmatch(ALPHA_PATTERN, label), (alpha, label)
        assert float(label) == alpha
    assert str(0.00001) == "1e-05" and alpha_label(0.00001) == "0.00001"
    assert alpha_label(0.1) == str(0.1)  # the usual values keep their old file names


def test_a_tiny_alpha_test_still_plans_its_evaluation(tmp_path):
    path = tmp_path / "alpha.yaml"
    path.write_text(mini_text(("alpha_test: [0.15, 0.125, 0.1]", "alpha_test: [0.15, 0.00001]")))
    result = snakemake(tmp_path, path, args=["--dry-run"])
    assert result.returncode == 0, result.stderr
    assert "results/mini/eval/mini_digits/true_outputs_alpha0.00001.npz" in result.stdout
    jobs = planned_jobs(result)
    assert jobs["evaluate"] == 3 and jobs["fig1"] == 1
    # mini_digits: 0.15, 0.00001 and alpha_train 0.1 for the scatter; 3 per tiny GPT-2
    assert jobs["evaluation_outputs"] == 3 + 3 + 3


# 5. Shards and masks.
def test_more_shards_than_masks_is_refused_before_any_job(tmp_path):
    text = mini_text(
        ("      n_masks: 5000\n", "      n_masks: 12\n"), ("n_shards: 4\n", "n_shards: 20\n")
    )
    path = tmp_path / "shards.yaml"
    path.write_text(text)
    message = refused(tmp_path, path)
    shards_line = line_of(text, "n_shards: 20")
    assert f"ablation.n_shards = 20 (shards.yaml, line {shards_line})" in message
    assert f"n_masks = 12 (shards.yaml, line {line_of(text, 'n_masks: 12')})" in message
    assert "8 shard(s) would ablate nothing. Set n_shards to at most 12" in message


def test_example_sets_too_cannot_have_more_shards_than_masks(tmp_path):
    config = load(MINI)
    config["setups"]["mini_digits"]["examples"]["train_per_class"].update(n_masks=3, n_shards=5)
    message = problems_of(config, tmp_path)
    assert "setups.mini_digits.examples.train_per_class.n_shards = 5" in message
    assert "Set n_shards to at most 3" in message


# 6. The scatter example.
def test_out_of_range_scatter_example_is_refused_before_any_job(tmp_path):
    text = mini_text(("      scatter_example: 0\n", "      scatter_example: 360\n"))
    path = tmp_path / "scatter.yaml"
    path.write_text(text)
    message = refused(tmp_path, path)
    line = line_of(text, "scatter_example: 360")
    assert f"setups.mini_digits.evaluation.scatter_example = 360 (scatter.yaml, line {line})" in (
        message
    )
    assert "evaluates on 360 examples" in message and "indices 0..359" in message


def test_the_digits_test_split_size_is_what_digits_split_makes():
    from coar_replication.data import digits_split

    for fraction in (0.2, 0.15, 0.333, 0.5):
        config = load(MINI)
        cfg = config["setups"]["mini_digits"]
        cfg["data"]["test_fraction"] = fraction
        count, exact, _ = Checker(config, Sources([])).evaluation_examples("mini_digits", cfg)
        assert exact and count == len(digits_split(fraction, 0, 0.1)["y_test"])


@pytest.mark.parametrize(
    ("setup", "index", "size"),
    [
        ("tiny_gpt2_rows", 40, "40 examples (language_models.tiny_gpt2.corpus.n_eval)"),
        ("cifar_miniresnet", 10_000, "10000 examples (source.splits.test of CIFAR-10's test"),
        ("imagenet_vit", 5000, "5000 examples (source.splits.test of imagenet_val (1000 classes"),
        ("clip_typographic", 2000, "2000 examples (clip.splits.test of CIFAR-10's test split)"),
        ("gpt2_rows", 500, "500 examples (language_models.gpt2.stories.last)"),
    ],
)
def test_scatter_example_is_checked_against_each_kind_of_evaluation_set(
    tmp_path, setup, index, size
):
    config = load(MINI if setup.startswith("tiny") else PAPER)
    config["setups"][setup]["evaluation"]["scatter_example"] = index - 1
    check(copy.deepcopy(config), MINI if setup.startswith("tiny") else PAPER)  # the last one
    config["setups"][setup]["evaluation"]["scatter_example"] = index
    message = problems_of(config, tmp_path)
    assert f"setups.{setup}.evaluation.scatter_example = {index}" in message
    assert f"evaluates on {size}" in message


def test_scatter_example_of_a_downloaded_test_split_is_checked_against_its_data_file(tmp_path):
    """The config does not say how many images waterbirds_test.beton holds: an up-to-date
    data file (its provenance record shows the config's splits) does."""
    config = load(PAPER)
    cfg = config["setups"]["waterbirds_resnet50"]
    cfg["evaluation"]["scatter_example"] = 5
    results = tmp_path / "results"
    check(copy.deepcopy(config), PAPER, results_dir=results)  # no data file yet: unknown
    data = results / "data" / "waterbirds_resnet50.npz"
    data.parent.mkdir(parents=True)
    np.savez(data, x_test=np.zeros((5, 1)), y_test=np.zeros(5, dtype=np.int64))
    sidecar = data.with_name(data.name + ".provenance.json")
    sidecar.write_text(json.dumps({"params": {"splits": cfg["source"]["splits"]}}))
    message = problems_of(config, tmp_path, results_dir=results)
    assert "evaluates on 5 examples" in message and "waterbirds_resnet50.npz" in message
    # a data file made from other splits says nothing about these
    stale = copy.deepcopy(cfg["source"]["splits"])
    stale["test"]["stop"] = 100
    sidecar.write_text(json.dumps({"params": {"splits": stale}}))
    check(copy.deepcopy(config), PAPER, results_dir=results)
    # a limit bounds the count even without the file
    cfg["source"]["splits"]["test"]["limit"] = 5
    assert "evaluates on at most 5 examples" in problems_of(config, tmp_path, results_dir=results)


# Other values whose range depends on other values.
def _digits(config):
    return config["setups"]["mini_digits"]


def _paper(name):
    return lambda config: config["setups"][name]


CROSS_FAULTS = [
    # (config, change, key named, what the message says)
    (
        MINI,
        lambda c: c["figures"]["fig1"]["setups"].append("setup_z"),
        "figures.fig1.setups[1] = 'setup_z'",
        "no setup 'setup_z' is defined",
    ),
    (
        MINI,
        lambda c: c["figures"]["fig3"]["setups"].append("mini_noisy"),
        "figures.fig3.setups[1] = 'mini_noisy'",
        "has no setups.mini_noisy.edits.forget",
    ),
    (
        MINI,
        lambda c: c["sample_efficiency"]["setups"].append("nope"),
        "sample_efficiency.setups[1] = 'nope'",
        "no setup 'nope' is defined",
    ),
    (
        MINI,
        lambda c: _digits(c)["ablation"].update(n_masks=8, n_shards=1),
        "setups.mini_digits.ablation.n_masks = 8",
        "fits of at least 10 rows",
    ),
    (
        MINI,
        lambda c: _digits(c)["fit"].update(val_fraction=0),
        "setups.mini_digits.fit.val_fraction = 0",
        "sample_efficiency fits ridge and lasso",
    ),
    (
        MINI,
        lambda c: _digits(c)["fit"].update(solver="ridge", val_fraction=0),
        "setups.mini_digits.fit.val_fraction = 0",
        "solver ridge picks lambda on held-out rows",
    ),
    (
        MINI,
        lambda c: _digits(c)["data"].update(test_fraction=0.5, val_fraction=0.5),
        "setups.mini_digits.data.val_fraction = 0.5",
        "no training images are left",
    ),
    (
        MINI,
        lambda c: _digits(c)["edits"]["forget"].update(examples="nope"),
        "setups.mini_digits.edits.forget.examples = 'nope'",
        "setups.mini_digits.examples has no example set 'nope'",
    ),
    (
        MINI,
        lambda c: _digits(c)["edits"]["forget"]["classes"].append(10),
        "setups.mini_digits.edits.forget.classes[3] = 10",
        "has 10 classes, 0..9",
    ),
    (
        MINI,
        lambda c: c["setups"]["mini_backdoor"]["data"]["backdoor"].update(target_class=12),
        "setups.mini_backdoor.data.backdoor.target_class = 12",
        "has 10 classes",
    ),
    (
        MINI,
        lambda c: c["setups"]["mini_backdoor"]["examples"]["train_triggered"].update(
            exclude_classes=[0, 10]
        ),
        "setups.mini_backdoor.examples.train_triggered.exclude_classes[1] = 10",
        "has 10 classes",
    ),
    (
        MINI,
        lambda c: _digits(c)["examples"]["train_per_class"].update(split="valid"),
        "setups.mini_digits.examples.train_per_class.split = 'valid'",
        "has no split 'valid' (its splits: test, train, val)",
    ),
    (
        MINI,
        lambda c: _digits(c)["data"].pop("val_fraction"),
        "setups.mini_digits.edits.forget",
        "needs a split for role 'val'",
    ),
    (
        MINI,
        lambda c: _digits(c)["edits"]["forget"].update(splits={"train": "train"}),
        "setups.mini_digits.edits.forget.splits.train = 'train'",
        "has no split role 'train' (its roles: val, test)",
    ),
    (
        MINI,
        lambda c: c["setups"]["mini_noisy"]["examples"]["test_errors"].update(split="val"),
        "setups.mini_noisy.examples.test_errors.split = 'val'",
        "plays the test role, 'test'",
    ),
    (
        MINI,
        lambda c: c["setups"]["tiny_gpt2_rows"].update(language_model="gpt3"),
        "setups.tiny_gpt2_rows.language_model = 'gpt3'",
        "no such entry under config key",
    ),
    (
        MINI,
        lambda c: c["language_models"]["tiny_gpt2"]["model"].update(n_head=5),
        "language_models.tiny_gpt2.model.n_head = 5",
        "Choose n_head among [1, 2, 4, 8, 16, 32]",
    ),
    (
        PAPER,
        lambda c: c["imagenet_val"].update(crop=300),
        "imagenet_val.crop = 300",
        "larger than the resized image (imagenet_val.resize = 256",
    ),
    (
        PAPER,
        lambda c: _paper("backdoored_cifar")(c)["source"]["splits"]["pool"].update(stop=20_000),
        "setups.backdoored_cifar.source.splits.pool.stop = 20000",
        "CIFAR-10's test split (cifar10_test) holds 10000 examples",
    ),
    (
        PAPER,
        lambda c: _paper("backdoored_cifar")(c)["source"]["splits"]["edit_val"].update(start=6000),
        "setups.backdoored_cifar.source.splits.edit_val.start = 6000",
        "no positions lie in [start, stop)",
    ),
    (
        PAPER,
        lambda c: _paper("imagenet_vit")(c)["source"]["splits"]["test"].update(start=50_000),
        "setups.imagenet_vit.source.splits.test.start = 50000",
        "imagenet_val (1000 classes x 50) holds 50000 examples",
    ),
    (
        PAPER,
        lambda c: _paper("clip_typographic")(c)["clip"]["splits"]["test"].update(stop=12_000),
        "setups.clip_typographic.clip.splits.test.stop = 12000",
        "holds 10000 examples",
    ),
    (
        PAPER,
        lambda c: _paper("cifar_miniresnet")(c)["source"]["published_attributions"].update(
            val={"download": "attr_cifar.pt", "alpha": 0.05}
        ),
        "setups.cifar_miniresnet.source.published_attributions.val",
        "has no split 'val' (source.splits: edit_test, edit_val, test, train)",
    ),
    (
        PAPER,
        lambda c: _paper("backdoored_cifar")(c)["edits"]["backdoor"]["splits"].update(
            test_triggered="edit_test_trigered"
        ),
        "setups.backdoored_cifar.edits.backdoor.splits.test_triggered = 'edit_test_trigered'",
        "has no split 'edit_test_trigered'",
    ),
    (
        PAPER,
        lambda c: _paper("clip_typographic")(c)["examples"]["attacked"].update(
            split="pool_triggered"
        ),
        "setups.clip_typographic.examples.attacked.split = 'pool_triggered'",
        "pool_attacked",
    ),
    (
        PAPER,
        lambda c: _paper("clip_typographic")(c)["edits"]["typographic"].update(clean="cleaned"),
        "setups.clip_typographic.edits.typographic.clean = 'cleaned'",
        "no example set 'cleaned'",
    ),
    (
        PAPER,
        lambda c: _paper("backdoored_cifar")(c)["edits"]["backdoor"].update(target_class=10),
        "setups.backdoored_cifar.edits.backdoor.target_class = 10",
        "has 10 classes, 0..9",
    ),
]


@pytest.mark.parametrize(("source", "change", "key", "text"), CROSS_FAULTS)
def test_values_out_of_the_range_other_values_allow_are_named(tmp_path, source, change, key, text):
    config = load(source)
    change(config)
    message = problems_of(config, tmp_path)
    assert message.startswith("Config error (")
    assert key in message and text in message, message
    assert "bad.yaml, line " in message  # where the value is set


def test_a_value_set_with_config_on_the_command_line_is_said_so(tmp_path):
    config = load(MINI)
    config["setups"]["mini_digits"]["evaluation"]["scatter_example"] = 999
    overrides = {"setups": {"mini_digits": {"evaluation": {"scatter_example": 999}}}}
    with pytest.raises(ConfigError) as err:
        check(config, MINI, overrides=overrides)
    assert "scatter_example = 999 (set with --config)" in str(err.value)


def test_the_minimum_rows_of_the_sample_efficiency_study_are_m_grid_s():
    from coar_replication.sample_efficiency import m_grid

    assert m_grid([1e-9], 1000)[0] == MIN_SAMPLE_EFFICIENCY_ROWS
    with pytest.raises(ValueError):
        m_grid([1.0], MIN_SAMPLE_EFFICIENCY_ROWS - 1)
    m_grid([1.0], MIN_SAMPLE_EFFICIENCY_ROWS)
