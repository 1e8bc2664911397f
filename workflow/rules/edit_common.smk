# Functions of the Coar-Edit rules (workflow/rules/edit.smk): example sets, experiments,
# and the figure-number table.


wildcard_constraints:
    examples=r"[A-Za-z0-9_]+",
    target_class=r"\d+",


EXAMPLE_SET_RUN_KEYS = ("n_masks", "n_shards")


def example_set(wildcards):
    sets = SETUPS[wildcards.setup].get("examples", {})
    if wildcards.examples not in sets:
        raise ValueError(
            f"setups.{wildcards.setup}.examples has no example set {wildcards.examples!r} "
            f"(defined: {sorted(sets)})"
        )
    return sets[wildcards.examples]


def example_selection(wildcards):
    """What selects the set's examples (split, rule, seed...): passed to coar_replication.setups.load_setup."""
    return {
        k: v for k, v in example_set(wildcards).items() if k not in EXAMPLE_SET_RUN_KEYS
    }


def selected_examples(wildcards):
    """The record of a selection made once by select_examples (selections that depend on
    the model's predictions); none for the others."""
    if example_set(wildcards).get("select") in MODEL_SELECTIONS:
        return f"{RESULTS}/examples/{wildcards.setup}/{wildcards.examples}.json"
    return []


def example_set_ablation(wildcards):
    """The setup's ablation settings with the example set's own mask count and shards."""
    examples = example_set(wildcards)
    return {
        **SETUPS[wildcards.setup]["ablation"],
        **{k: examples[k] for k in EXAMPLE_SET_RUN_KEYS},
        "examples": {"name": wildcards.examples, **example_selection(wildcards)},
    }


def example_set_run(wildcards):
    cfg = example_set_ablation(wildcards)
    return {
        **run_id(cfg["seed"], "train", cfg["alpha_train"], cfg["n_masks"]),
        "examples": example_selection(wildcards),
    }


def example_shard_paths(wildcards):
    n_shards = example_set(wildcards)["n_shards"]
    return [
        f"{RESULTS}/ablations/{wildcards.setup}/{wildcards.examples}/shard_{k}.npz"
        for k in range(n_shards)
    ]


def example_attributions(setup, name):
    return f"{RESULTS}/attributions/{setup}/{name}/coar.pt"


def edit_config(setup, experiment):
    edits = SETUPS[setup].get("edits", {})
    if experiment not in edits:
        raise ValueError(
            f"setups.{setup}.edits has no {experiment!r} experiment, "
            f"but a figure of that experiment lists setup {setup!r}"
        )
    return edits[experiment]


def backdoor_target_class(wildcards):
    """The trigger's class: the backdoor edit's own (paper setups), else the one the
    workflow planted (embedded default, data.backdoor)."""
    edit = edit_config(wildcards.setup, "backdoor")
    if "target_class" in edit:
        return edit["target_class"]
    planted = SETUPS[wildcards.setup].get("data", {}).get("backdoor")
    if planted is None:
        raise ValueError(
            f"setups.{wildcards.setup}.edits.backdoor needs target_class (the trigger's "
            "class): the setup has no data.backdoor to take it from"
        )
    return planted["target_class"]


def figure_of(experiment):
    """The figure number showing an experiment (config table), or a never-matching pattern."""
    numbers = [
        name
        for name, figure in config["figures"].items()
        if figure.get("experiment") == experiment
    ]
    return "|".join(numbers) or "(?!)"


def subpopulation_group_names(figure):
    """Setup -> {group number: what the group is} for the figure's setups whose groups
    have names (the embedded default's spurious digits), for the subpopulation figure.
    """
    from coar_replication.edit_data import SPURIOUS_GROUPS

    return {
        setup: {str(g): name for g, name in SPURIOUS_GROUPS.items()}
        for setup in figure_setups(figure)
        if "spurious" in SETUPS[setup].get("data", {})
    }


def experiment_setups(wildcards, experiment):
    setups = figure_setups(wildcards.figure)
    for setup in setups:
        edit_config(setup, experiment)
    return setups


def forget_summaries(wildcards):
    return [
        f"{RESULTS}/edits/{setup}/forget/class{c}/{name}"
        for setup in experiment_setups(wildcards, "forget")
        for c in edit_config(setup, "forget")["classes"]
        for name in ("sweep.csv", "summary.json")
    ]


def experiment_outputs(experiment, *names):
    def paths(wildcards):
        return [
            f"{RESULTS}/edits/{setup}/{experiment}/{name}"
            for setup in experiment_setups(wildcards, experiment)
            for name in names
        ]

    return paths
