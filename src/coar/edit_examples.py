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

Two sets with the same selection on splits of the same labels (e.g. a clean
and a triggered copy of the same images) select the same rows: pairs stay
paired.
"""

from __future__ import annotations

import numpy as np
import torch

from coar.setups import Setup

SELECTIONS = ("all", "random", "per_class", "per_group", "misclassified")


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
