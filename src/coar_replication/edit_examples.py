"""Example sets for Coar-Edit: which examples of which split get attributions.

An example set (config: ``setups.<setup>.examples.<name>``) names a split and a
seeded selection rule; the same stages as the main run (ablate -> gather ->
fit) then attribute the selected examples. Selections:

- ``all``: every example of the split;
- ``random``: ``n`` examples, optionally without ``exclude_classes``;
- ``per_class``: ``n`` examples of every class;
- ``per_group``: ``n`` examples of every group (the split's ``groups``);
- ``misclassified``: every example the (unedited) model gets wrong (at most ``n`` of
  them, chosen at random, if ``n`` is given).

A selection that depends on the model's predictions (`coar_replication.selections.MODEL_SELECTIONS`)
can come out differently on another device (e.g. TF32 convolutions on a GPU, float32 on
the CPU): the workflow makes it once (`selection_record`) and every step that needs the examples
reads that record (`with_selected_ids`: the set's ``ids``, taken as they are).

Two sets with the same selection on splits of the same labels (e.g. a clean
and a triggered copy of the same images) select the same rows: pairs stay
paired.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from coar_replication.selections import SELECTIONS
from coar_replication.setup import Setup


def _sample(rng: np.random.Generator, pool: np.ndarray, n: int, what: str) -> np.ndarray:
    if len(pool) < n:
        raise ValueError(f"{what}: asked for {n} examples, only {len(pool)} available")
    return np.sort(rng.choice(pool, n, replace=False))


@torch.no_grad()
def _predictions(setup: Setup, batch: int = 2048) -> np.ndarray:
    setup.model.eval()
    return torch.cat(
        [
            setup.model(setup.inputs[i : i + batch]).argmax(1).cpu()
            for i in range(0, setup.n_examples, batch)
        ]
    ).numpy()


def selected_ids(setup: Setup, examples: dict) -> np.ndarray:
    """Indices (within the split) of the examples an example set selects, ascending."""
    select = examples.get("select", "all")
    what = f"setup {setup.name!r}, split {examples['split']!r}, selection {select!r}"
    labels = setup.labels.cpu().numpy()
    rng = np.random.default_rng(examples.get("seed", 0))
    if "ids" in examples:  # the selection, made once before (with_selected_ids)
        ids = np.asarray(examples["ids"], dtype=np.int64)
        if ids.ndim != 1 or not len(ids) or (np.diff(ids) <= 0).any():
            raise ValueError(f"{what}: ids must be ascending positions, got {examples['ids']}")
        if ids[0] < 0 or ids[-1] >= len(labels):
            raise ValueError(f"{what}: ids {ids.tolist()} outside the split's {len(labels)}")
        return ids
    if select == "all":
        return np.arange(len(labels))
    if select == "random":
        pool = np.flatnonzero(~np.isin(labels, examples.get("exclude_classes", [])))
        return _sample(rng, pool, examples["n"], what)
    if select == "per_class":
        return np.sort(
            np.concatenate(
                [
                    _sample(rng, np.flatnonzero(labels == c), examples["n"], f"{what}, class {c}")
                    for c in np.unique(labels)
                ]
            )
        )
    if select == "per_group":
        if setup.groups is None:
            raise ValueError(f"{what}: the split has no groups")
        return np.sort(
            np.concatenate(
                [
                    _sample(
                        rng, np.flatnonzero(setup.groups == g), examples["n"], f"{what}, group {g}"
                    )
                    for g in np.unique(setup.groups)
                ]
            )
        )
    if select == "misclassified":
        ids = np.flatnonzero(_predictions(setup) != labels)
        if len(ids) == 0:
            raise ValueError(f"{what}: the model makes no errors on this split")
        if "n" in examples and examples["n"] < len(ids):
            return _sample(rng, ids, examples["n"], what)
        return ids
    raise ValueError(f"{what}: unknown selection (known: {SELECTIONS})")


def select_examples(setup: Setup, examples: dict) -> Setup:
    """The setup restricted to an example set's examples (example_ids = their split indices)."""
    ids = selected_ids(setup, examples)
    index = torch.from_numpy(ids).to(setup.inputs.device)
    return Setup(
        setup.name,
        setup.model,
        setup.spec,
        setup.inputs[index],
        setup.labels[index],
        setup.output_fn,
        example_ids=ids,
        groups=None if setup.groups is None else setup.groups[ids],
    )


def selection_record(setup: Setup, examples: dict) -> dict:
    """What an example set selected (`select_examples` on the unrestricted setup): the
    selection and the examples' positions in their split."""
    ids = selected_ids(setup, examples)
    return {"examples": dict(examples), "ids": [int(i) for i in ids], "n_split": setup.n_examples}


def with_selected_ids(examples: dict | None, record_path=None) -> dict | None:
    """The example set with the positions its record (`selection_record`, a JSON file)
    holds; the record must be of the same selection. Without a record (None or empty:
    the selection depends on labels only), the example set as it is."""
    if examples is None or not record_path:
        return examples
    with open(record_path) as f:
        record = json.load(f)
    if record["examples"] != examples:
        raise ValueError(
            f"{record_path} records the selection {record['examples']}, not {examples}: "
            "rerun the step that writes it"
        )
    return {**examples, "ids": record["ids"]}
