"""The workflow's config, checked before any job runs.

Snakemake reads the config files it is given (with PyYAML, which follows YAML 1.1),
merges them with ``--config``, and the Snakefile validates the result against
``workflow/schemas/config.schema.yaml``. `check_workflow_config`, called right after by
``workflow/rules/common.smk``, finds what that leaves, and names for each fault the key,
its value, the file and line that set it, and what to do:

- a key given twice in one mapping of a file: YAML keeps the last value without a word;
- numbers that YAML 1.1 reads as text (``1e-3``, ``1e5``, ``1.0e3``: no dot, or no sign
  in the exponent). The schema lets text through where it wants a number; here such
  text becomes the number YAML 1.2 reads, then the config is checked against the
  schema with ``number`` and ``integer`` meaning just that (an integral float such as
  ``5000.0`` becomes the integer ``5000``; other text is refused by key);
- values whose valid range depends on other values: shards and masks, the scatter
  example and the size of the evaluation set, positions in a dataset, class indices,
  fractions that must leave data, and names of other entries (setups, example sets,
  splits, language models).

``python -m coar_workflow.config FILE...`` reads config files the same way on their own:
it locates a YAML syntax error (file, line and column), which Snakemake, reading the
files before the workflow's code runs, reports without either.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"
# Numbers as YAML 1.2 (core schema) reads them; YAML 1.1 reads those without a dot
# (1e-3) or without a sign in the exponent (1.0e3) as text.
INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")
NUMBER_TEXT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")

# Sizes the config implies. The digits: scikit-learn's 1,797 images, of which
# train_test_split puts ceil(test_fraction x 1797) into the test split
# (coar_replication.data.digits_split); CIFAR-10's splits.
N_DIGITS = 1797
CIFAR10 = {"train": 50_000, "test": 10_000}
# Fewest rows of a fit in the sample-efficiency study (coar_replication.sample_efficiency.m_grid).
MIN_SAMPLE_EFFICIENCY_ROWS = 10
# Coar-Edit experiments: config keys naming example sets, and the split roles each
# experiment loads (coar_workflow.edit_io.SetupSplits; workflow/scripts/edit_*.py).
EXPERIMENTS = {
    "errors": (("examples", "reference"), ("train", "val", "test")),
    "forget": (("examples",), ("val", "test")),
    "subpopulation": (("examples",), ("val", "test")),
    "backdoor": (("triggered", "clean"), ("val", "val_triggered", "test", "test_triggered")),
    "typographic": (("attacked", "clean"), ("val", "val_attacked", "test", "test_attacked")),
}
LAMBDA_SOLVERS = ("ridge", "lasso")  # they pick lambda on held-out rows (coar.fit)
SCHEMA_HELP = "see workflow/schemas/config.schema.yaml"


# Ablation fractions in file names (true_outputs_alpha<alpha>.npz): the {alpha} wildcard.
ALPHA_PATTERN = r"0\.\d+"


def alpha_label(alpha: float) -> str:
    """An ablation fraction as file names spell it: in positional notation, with as few
    digits as tell the float apart (0.1, 0.125, 0.00001; str() gives 1e-05), so that
    every alpha in (0, 1) matches ALPHA_PATTERN and reads back as the same float."""
    return format(Decimal(repr(float(alpha))), "f")


class ConfigError(ValueError):
    """A fault of the config; the message names file, line, key, value and what to do."""


# -- reading a config file --------------------------------------------------------------
@dataclass
class ConfigFile:
    """One config file as YAML reads it, and the line of every key in it."""

    path: str  # as messages show it
    data: object
    lines: dict[tuple, int] = field(default_factory=dict)  # key path -> line (from 1)


def _scalar_text(node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value) if node.style else node.value
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _walk(loader, node, path, found: ConfigFile, twice: list, checked: set, active: set, own=True):
    """Record the line of every key and list item under `node` at `path`, and each key
    given twice in one mapping. Keys that a merge (``<<: *anchor``) brings in do not
    override the mapping's own (``own`` False)."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            merged = []
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    merged += (
                        value_node.value
                        if isinstance(value_node, yaml.SequenceNode)
                        else [value_node]
                    )
                    continue
                key = (
                    loader.construct_object(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else "?"
                )
                line = key_node.start_mark.line + 1
                if key in first and id(node) not in checked:
                    twice.append((path + (key,), first[key], (line, value_node)))
                first.setdefault(key, (line, value_node))
                if own or path + (key,) not in found.lines:
                    found.lines[path + (key,)] = line
                _walk(loader, value_node, path + (key,), found, twice, checked, active, own)
            checked.add(id(node))
            for merged_node in merged:
                _walk(loader, merged_node, path, found, twice, checked, active, own=False)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                if own or path + (i,) not in found.lines:
                    found.lines[path + (i,)] = item.start_mark.line + 1
                _walk(loader, item, path + (i,), found, twice, checked, active, own)
    finally:
        active.discard(id(node))


def _syntax_message(shown: str, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{shown}, line {mark.line + 1}, column {mark.column + 1}" if mark else shown
    what = err.problem or err.context or "not valid YAML"
    if err.context and err.problem and err.context_mark:
        what += f" ({err.context} on line {err.context_mark.line + 1})"
    return (
        f"{where}: YAML syntax error: {what}. Fix the file there: indent with spaces "
        "(no tabs), close every bracket and quote, and put a space after each ':'."
    )


def read_config_file(path, shown: str | None = None) -> ConfigFile:
    """Read a config file as Snakemake does (YAML 1.1; JSON is YAML too), but refuse a
    key given twice in one mapping, and say where a syntax error is (ConfigError)."""
    shown = shown or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {shown} cannot be read: {err}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        found = ConfigFile(shown, None)
        twice: list = []
        if node is not None:
            _walk(loader, node, (), found, twice, checked=set(), active=set())
        if twice:
            raise ConfigError(
                "\n".join(
                    f"{shown}, line {line}: key {key_name(key_path)} is given twice, on lines "
                    f"{first_line} ({_scalar_text(first_node)}) and {line} "
                    f"({_scalar_text(value_node)}); YAML keeps the last value without a word. "
                    "Delete the one you do not mean."
                    for key_path, (first_line, first_node), (line, value_node) in twice
                )
            )
        found.data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_syntax_message(shown, err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{shown}: not valid YAML ({err}). Fix the file.") from None
    finally:
        loader.dispose()
    return found


# -- where a value comes from ------------------------------------------------------------
def key_name(path: Iterable) -> str:
    """("setups", "a", "alpha_test", 0) -> "setups.a.alpha_test[0]"."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def lookup(tree, path):
    """(True, value) at `path` of nested mappings and lists, else (False, None)."""
    for part in path:
        if isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and 0 <= part < len(tree):
            tree = tree[part]
        else:
            return False, None
    return True, tree


@dataclass
class Sources:
    """Which file and line set each key: the last config file that has it (Snakemake
    merges them in order), unless ``--config`` set it."""

    files: list[ConfigFile]
    overrides: Mapping = field(default_factory=dict)

    def of(self, path) -> str:
        path = tuple(path)
        if any(lookup(self.overrides, path[:n])[0] for n in range(1, len(path) + 1)):
            return "set with --config"
        for file in reversed(self.files):
            if path in file.lines:
                return f"{file.path}, line {file.lines[path]}"
        return ""


def show(value) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# -- numbers that YAML 1.1 reads as text --------------------------------------------------
def strict_schema(schema: dict) -> dict:
    """The schema with `number` and `integer` meaning just that (no number-like text)."""
    schema = copy.deepcopy(schema)
    schema["$defs"]["number"] = {"type": "number"}
    schema["$defs"]["integer"] = {"type": "integer"}
    return schema


def _validator(schema: dict):
    from jsonschema import Draft202012Validator, validators

    # An integer is an int (JSON Schema's own check takes 5000.0 too, which range() does not).
    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return validators.extend(Draft202012Validator, type_checker=types)(strict_schema(schema))


def _type_errors(errors):
    for error in errors:
        if error.validator == "type":
            yield error
        yield from _type_errors(error.context or ())


def as_number(value, types):
    """The number that `value` (text YAML 1.2 reads as a number, or an integral float
    where only an integer will do) stands for, or None."""
    types = {types} if isinstance(types, str) else set(types)
    if isinstance(value, str):
        text = value.strip()
        if INTEGER_TEXT.fullmatch(text):
            number = int(text)
        elif NUMBER_TEXT.fullmatch(text):
            number = float(text)
        else:
            return None
    elif isinstance(value, float):
        number = value
    else:
        return None
    if not math.isfinite(number):
        return None
    if "number" in types:
        return number
    if "integer" in types and float(number).is_integer():
        return int(number)
    return None


def numbers_from_text(config: dict, schema: dict) -> list[tuple]:
    """Replace, in place, number-like text where the schema wants a number (and integral
    floats where it wants an integer) by the number; returns (path, old, new) of each."""
    validator = _validator(schema)
    changed = []
    for error in list(_type_errors(validator.iter_errors(config))):
        new = as_number(error.instance, error.validator_value)
        path = tuple(error.absolute_path)
        if new is None or not path:
            continue
        parent = lookup(config, path[:-1])[1]
        parent[path[-1]] = new
        changed.append((path, error.instance, new))
    return changed


def schema_problems(config: dict, schema: dict, sources: Sources) -> list[str]:
    from jsonschema.exceptions import best_match

    problems = []
    errors = sorted(_validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        error = best_match([error])
        path = tuple(error.absolute_path)
        where = sources.of(path)
        key = key_name(path) or "the config"
        if error.validator == "type" and error.validator_value in ("number", "integer"):
            wanted = (
                "a number, e.g. 0.001 or 1e-3"
                if error.validator_value == "number"
                else ("a whole number, e.g. 5000 or 5e3")
            )
            hint = f"Write {wanted}."
        else:
            hint = f"Correct it ({SCHEMA_HELP})."
        found, value = lookup(config, path)
        text = f"{key} = {show(value)}" if found and not isinstance(value, Mapping) else key
        problems.append(f"{text}{f' ({where})' if where else ''}: {error.message}. {hint}")
    return problems


# -- values whose range depends on other values ---------------------------------------------
def positions(part: Mapping, n: int | None) -> tuple[int | None, bool]:
    """How many positions `part` (start, stop, every, limit) keeps of a set of `n` (None:
    unknown): (count, exact), or (limit, False) as an upper bound, or (None, False)."""
    start, stop, limit = part.get("start", 0), part.get("stop"), part.get("limit")
    end = stop if stop is not None else n
    if end is None:
        return limit, False
    count = len(range(start, end, part.get("every", 1)))
    return (count if limit is None else min(count, limit)), True


def npz_rows(path, name: str) -> int:
    """Length of array `name` of an .npz file, read from its header only."""
    import numpy as np

    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read(f)
    return int(shape[0])


class Checker:
    """The checks of values against other values; each fault is one line of `problems`."""

    def __init__(self, config: dict, sources: Sources, results_dir=None):
        self.config, self.sources = config, sources
        self.results = Path(results_dir if results_dir is not None else config["results_dir"])
        self.setups = config.get("setups", {})
        self.problems: list[str] = []

    def key(self, *path) -> str:
        """``key = value (file, line N)``."""
        found, value = lookup(self.config, path)
        where = self.sources.of(path)
        shown = found and not isinstance(value, Mapping)  # not a whole mapping
        text = key_name(path) + (f" = {show(value)}" if shown else "")
        return f"{text} ({where})" if where else text

    def add(self, path, text: str) -> None:
        self.problems.append(f"{self.key(*path)}: {text}")

    def run(self) -> list[str]:
        self.figures()
        self.sample_efficiency()
        for name in ("imagenet_val", "imagenet_train"):
            if name in self.config and self.config[name]["crop"] > self.config[name]["resize"]:
                self.add(
                    (name, "crop"),
                    "the center crop is larger than the resized image "
                    f"({self.key(name, 'resize')}). Set crop at most resize (torchvision's "
                    "evaluation transform: resize 256, crop 224).",
                )
        for name, lm in self.config.get("language_models", {}).items():
            model = lm.get("model")
            if model and model["n_embd"] % model["n_head"]:
                divisors = [d for d in range(1, model["n_embd"] + 1) if model["n_embd"] % d == 0]
                self.add(
                    ("language_models", name, "model", "n_head"),
                    f"GPT-2 splits {self.key('language_models', name, 'model', 'n_embd')} "
                    f"evenly over its heads. Choose n_head among {divisors[:12]}.",
                )
        for name, cfg in self.setups.items():
            self.setup(name, cfg)
        return self.problems

    # -- names of setups ---------------------------------------------------------------
    def _unknown_setup(self, path, name: str) -> None:
        self.add(
            path,
            f"no setup {name!r} is defined (defined setups: {', '.join(sorted(self.setups))}). "
            "Name one of them, or define it under config key setups.",
        )

    def figures(self) -> None:
        for figure, cfg in self.config.get("figures", {}).items():
            experiment = cfg.get("experiment")
            for i, name in enumerate(cfg["setups"]):
                path = ("figures", figure, "setups", i)
                if name not in self.setups:
                    self._unknown_setup(path, name)
                elif experiment and experiment not in self.setups[name].get("edits", {}):
                    self.add(
                        path,
                        f"figure {figure} shows the {experiment} experiment, but the setup has no "
                        f"setups.{name}.edits.{experiment}. Add that experiment to the setup, or "
                        "take the setup off the figure.",
                    )

    def sample_efficiency(self) -> None:
        study = self.config.get("sample_efficiency")
        if not study:
            return
        lambda_solvers = [s for s in study["solvers"] if s in LAMBDA_SOLVERS]
        for i, name in enumerate(study["setups"]):
            if name not in self.setups:
                self._unknown_setup(("sample_efficiency", "setups", i), name)
                continue
            if self.setups[name]["ablation"]["n_masks"] < MIN_SAMPLE_EFFICIENCY_ROWS:
                self.add(
                    ("setups", name, "ablation", "n_masks"),
                    f"sample_efficiency studies this setup with fits of at least "
                    f"{MIN_SAMPLE_EFFICIENCY_ROWS} rows, more than its masks. Raise n_masks to "
                    f"{MIN_SAMPLE_EFFICIENCY_ROWS} or more, or drop {name!r} from "
                    "sample_efficiency.setups.",
                )
            override = "val_fraction" in study.get("fit", {})
            val_path = ("sample_efficiency", "fit") if override else ("setups", name, "fit")
            if lambda_solvers and lookup(self.config, (*val_path, "val_fraction"))[1] == 0:
                self.add(
                    (*val_path, "val_fraction"),
                    f"sample_efficiency fits {' and '.join(lambda_solvers)} on setup {name!r}; "
                    "they pick lambda on held-out rows and val_fraction 0 holds none. Set "
                    "sample_efficiency.fit.val_fraction above 0 (e.g. 0.1).",
                )

    # -- one setup -------------------------------------------------------------------------
    def splits_of(self, cfg) -> set[str] | None:
        """The splits of a setup's data file (None: not known from the config)."""
        if cfg["kind"] == "mini_digits":
            data = cfg["data"]
            evaluation = ["test", *(["val"] if data.get("val_fraction", 0) > 0 else [])]
            splits = {"train", *evaluation}
            if "backdoor" in data:  # coar_replication.edit_data.backdoor_digits
                splits |= {
                    "train_clean",
                    "train_triggered",
                    *(f"{s}_triggered" for s in evaluation),
                }
            return splits
        if cfg["kind"] == "clip_zero_shot":  # every split and its attacked copy
            names = cfg["clip"]["splits"]
            return {*names, *(f"{n}_attacked" for n in names)}
        if "source" in cfg:
            return set(cfg["source"]["splits"])
        return None

    def n_classes(self, cfg) -> int | None:
        if cfg["kind"] == "mini_digits":
            return 2 if "spurious" in cfg["data"] else 10  # spurious: "digit >= 5"
        if cfg["kind"] == "clip_zero_shot":
            return len(cfg["clip"]["class_names"])
        if "source" in cfg:
            return cfg["source"]["model"]["num_classes"]
        return None

    def _class_index(self, path, n_classes: int | None, name: str) -> None:
        found, value = lookup(self.config, path)
        if found and n_classes is not None and value >= n_classes:
            self.add(
                path,
                f"setup {name!r} has {n_classes} classes, 0..{n_classes - 1}. Name one of them.",
            )

    def setup(self, name: str, cfg: dict) -> None:
        base = ("setups", name)
        self._shards(base + ("ablation",))
        fit = cfg["fit"]
        if fit["solver"] in LAMBDA_SOLVERS and fit["val_fraction"] == 0:
            self.add(
                base + ("fit", "val_fraction"),
                f"solver {fit['solver']} picks lambda on held-out rows, and val_fraction 0 holds "
                "none. Set val_fraction above 0 (e.g. 0.1), or use solver least_squares.",
            )
        n_classes = self.n_classes(cfg)
        data = cfg.get("data", {})
        if data.get("test_fraction", 0) + data.get("val_fraction", 0) >= 1:
            self.add(
                base + ("data", "val_fraction"),
                f"with {self.key(*base, 'data', 'test_fraction')} no training images are left. "
                "Keep test_fraction + val_fraction below 1.",
            )
        if "backdoor" in data:
            self._class_index(base + ("data", "backdoor", "target_class"), n_classes, name)
        if cfg["kind"] == "causal_lm" and cfg["language_model"] not in self.config.get(
            "language_models", {}
        ):
            self.add(
                base + ("language_model",),
                "no such entry under config key language_models (defined: "
                f"{', '.join(sorted(self.config.get('language_models', {}))) or 'none'}). "
                "Name one, or define it there.",
            )
        if "source" in cfg:
            splits = cfg["source"]["splits"]
            for split, part in splits.items():
                n, what = self.source_size(part)
                self._positions(base + ("source", "splits", split), part, n, what)
            for split in cfg["source"].get("published_attributions", {}):
                if split not in splits:
                    self.add(
                        base + ("source", "published_attributions", split),
                        f"setup {name!r} has no split {split!r} (source.splits: "
                        f"{', '.join(sorted(splits))}). Name a split of source.splits.",
                    )
        if "clip" in cfg:
            cifar = cfg["clip"]["cifar10"]["split"]
            for split, part in cfg["clip"]["splits"].items():
                what = f"CIFAR-10's {cifar} split"
                self._positions(base + ("clip", "splits", split), part, CIFAR10[cifar], what)
        self.scatter_example(name, cfg)
        splits = self.splits_of(cfg)
        sets = cfg.get("examples", {})
        for set_name, example_set in sets.items():
            path = base + ("examples", set_name)
            self._shards(path)
            if splits is not None and example_set["split"] not in splits:
                self.add(
                    path + ("split",),
                    f"setup {name!r} has no split {example_set['split']!r} (its splits: "
                    f"{', '.join(sorted(splits))}). Name one of them.",
                )
            for i in range(len(example_set.get("exclude_classes", []))):
                self._class_index(path + ("exclude_classes", i), n_classes, name)
        for experiment, edit in cfg.get("edits", {}).items():
            self.edit(name, experiment, edit, splits, n_classes)

    def _shards(self, path) -> None:
        cfg = lookup(self.config, path)[1]
        if cfg["n_shards"] > cfg["n_masks"]:
            self.add(
                path + ("n_shards",),
                f"more shards than masks ({self.key(*path, 'n_masks')}): "
                f"{cfg['n_shards'] - cfg['n_masks']} shard(s) would ablate nothing. Set n_shards "
                f"to at most {cfg['n_masks']}, or raise n_masks.",
            )

    def source_size(self, part) -> tuple[int | None, str]:
        """Examples in a split's source beton, where the config says (None: unknown)."""
        if "download" in part:
            return None, f"download {part['download']}"
        beton = part["beton"]
        if beton.startswith("cifar10_"):
            split = beton.removeprefix("cifar10_")
            return CIFAR10[split], f"CIFAR-10's {split} split ({beton})"
        cfg = self.config.get(beton)
        if cfg is None:
            return None, beton
        per_class = cfg["images_per_class"] if beton == "imagenet_val" else cfg.get("per_class", 10)
        return cfg["n_classes"] * per_class, f"{beton} ({cfg['n_classes']} classes x {per_class})"

    def _positions(self, path, part, n: int | None, what: str) -> None:
        start, stop = part.get("start", 0), part.get("stop")
        if stop is not None and n is not None and stop > n:
            self.add(
                path + ("stop",),
                f"{what} holds {n} examples. Set stop to {n} or less (or leave it out: "
                "up to the end).",
            )
        elif stop is not None and start >= stop:
            self.add(
                path + ("start",),
                f"no positions lie in [start, stop): {self.key(*path, 'stop')}. "
                "Set start below stop.",
            )
        elif n is not None and start >= n:
            self.add(
                path + ("start",), f"{what} holds {n} examples, 0..{n - 1}. Set start below {n}."
            )

    def evaluation_examples(self, name: str, cfg: dict) -> tuple[int | None, bool, str]:
        """How many examples a setup evaluates on (its test split, or the evaluation
        stories): (count, exact, where from); count None where neither the config nor an
        up-to-date data file says."""
        kind = cfg["kind"]
        if kind == "mini_digits":
            fraction = cfg["data"]["test_fraction"]
            count = math.ceil(fraction * N_DIGITS)
            return count, True, f"test_fraction {fraction} of the {N_DIGITS} digits images"
        if kind == "causal_lm":
            lm = self.config.get("language_models", {}).get(cfg["language_model"])
            if lm is None:
                return None, False, ""
            if lm["source"] == "generated":
                return (
                    lm["corpus"]["n_eval"],
                    True,
                    f"language_models.{cfg['language_model']}.corpus.n_eval",
                )
            return (
                lm["stories"]["last"],
                True,
                f"language_models.{cfg['language_model']}.stories.last",
            )
        if kind == "clip_zero_shot":
            cifar = cfg["clip"]["cifar10"]["split"]
            count, exact = positions(cfg["clip"]["splits"]["test"], CIFAR10[cifar])
            return count, exact, f"clip.splits.test of CIFAR-10's {cifar} split"
        part = cfg["source"]["splits"]["test"]
        n, what = self.source_size(part)
        count, exact = positions(part, n)
        if exact:
            return count, True, f"source.splits.test of {what}"
        in_file = self._examples_in_data_file(name, cfg)
        if in_file is not None:
            return in_file, True, f"{self.results}/data/{name}.npz, test split"
        return count, False, "at most source.splits.test.limit"

    def _examples_in_data_file(self, name: str, cfg: dict) -> int | None:
        """The test split's size in the setup's data file, if its provenance record shows
        it was made from the config's splits (else the file is out of date)."""
        data = self.results / "data" / f"{name}.npz"
        try:
            record = json.loads(data.with_name(data.name + ".provenance.json").read_text())
            made_from = record["params"]["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if made_from != json.loads(json.dumps(cfg["source"]["splits"], default=str)):
            return None
        try:
            return npz_rows(data, "y_test")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None

    def scatter_example(self, name: str, cfg: dict) -> None:
        path = ("setups", name, "evaluation", "scatter_example")
        count, exact, where = self.evaluation_examples(name, cfg)
        if count is not None and cfg["evaluation"]["scatter_example"] >= count:
            size = f"{count} examples" if exact else f"at most {count} examples"
            self.add(
                path,
                f"setup {name!r} evaluates on {size} ({where}), indices 0..{count - 1}. "
                "Set scatter_example to one of them.",
            )

    def edit(self, name, experiment, edit, splits, n_classes) -> None:
        base = ("setups", name, "edits", experiment)
        set_keys, roles = EXPERIMENTS[experiment]
        sets = self.setups[name].get("examples", {})
        for key in set_keys:
            if edit[key] not in sets:
                self.add(
                    base + (key,),
                    f"setups.{name}.examples has no example set {edit[key]!r} (defined: "
                    f"{', '.join(sorted(sets)) or 'none'}). Name one of them, or define it there.",
                )
        mapped = edit.get("splits", {})
        for role in mapped:
            if role not in roles:
                self.add(
                    base + ("splits", role),
                    f"the {experiment} experiment has no split role {role!r} (its roles: "
                    f"{', '.join(roles)}). Use one of them, or remove the entry.",
                )
        if splits is not None:
            for role in roles:
                split = mapped.get(role, role)
                if split not in splits:
                    path = base + ("splits", role) if role in mapped else base
                    self.add(
                        path,
                        f"the {experiment} experiment needs a split for role {role!r}, and "
                        f"setup {name!r} has no split {split!r} (its splits: "
                        f"{', '.join(sorted(splits))}). Map the role to one of them under "
                        f"setups.{name}.edits.{experiment}.splits.",
                    )
        if experiment == "errors" and edit["examples"] in sets:
            examples_split, test_split = sets[edit["examples"]]["split"], mapped.get("test", "test")
            if examples_split != test_split:
                self.add(
                    ("setups", name, "examples", edit["examples"], "split"),
                    f"the errors to fix must come from the split that plays the test role, "
                    f"{test_split!r} (setups.{name}.edits.errors.splits.test). Use that split, or "
                    "map the test role to this one.",
                )
        for i in range(len(edit.get("classes", []))):
            self._class_index(base + ("classes", i), n_classes, name)
        if "target_class" in edit:
            self._class_index(base + ("target_class",), n_classes, name)


# -- the whole check -------------------------------------------------------------------------
def _shown(path, base) -> str:
    path = Path(path)
    for root in (Path.cwd(), Path(base) if base else None):
        if root is not None:
            try:
                return str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                pass
    return str(path)


def report(problems: list[str]) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    return f"Config error ({len(problems)} problem(s)); no job was run:\n{lines}"


def check_workflow_config(
    config: dict,
    configfiles,
    schema_path,
    overrides: Mapping | None = None,
    results_dir=None,
    base=None,
) -> list[tuple]:
    """Check the workflow's config (Snakemake's merged config, already validated against
    the schema with number-like text let through) and the files it came from; turn
    number-like text into numbers in place. Raises ConfigError naming every fault;
    returns the (path, text, number) of each conversion."""
    files, problems = [], []
    for path in dict.fromkeys(map(str, configfiles)):
        try:
            files.append(read_config_file(path, _shown(path, base)))
        except ConfigError as err:
            problems += str(err).splitlines()
    if problems:
        raise ConfigError(report(problems))
    sources = Sources(files, overrides or {})
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    converted = numbers_from_text(config, schema)
    problems = schema_problems(config, schema, sources)
    if not problems:
        problems = Checker(config, sources, results_dir).run()
    if problems:
        raise ConfigError(report(problems))
    return converted


def main(argv=None) -> int:
    """Read config files on their own: syntax errors and keys given twice, located."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m coar_workflow.config CONFIG.yaml...", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        try:
            read_config_file(path)
        except ConfigError as err:
            print(err, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: readable, no key given twice")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
