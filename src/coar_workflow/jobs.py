"""A workflow job's setup and example set, read off the Snakemake ``snakemake`` object.

Workflow scripts are thin: these helpers turn a job's wildcards, params and inputs
into the replication's objects, so that no other module sees Snakemake.
"""

from __future__ import annotations

import torch

from coar_replication.edit_examples import with_selected_ids
from coar_replication.setup import Setup
from coar_replication.setups import load_setup


def example_set_of_rule(smk) -> dict | None:
    """A workflow job's example set (its ``examples`` param; None for the setup's own
    evaluation examples), with the record of its selection (its ``ids`` input) where the
    selection depends on the model."""
    return with_selected_ids(smk.params.get("examples"), smk.input.get("ids"))


def load_setup_of_rule(smk, device: torch.device, examples: dict | None = None) -> Setup:
    """`load_setup` for a workflow job: its ``setup`` wildcard, ``kind`` param and
    ``model`` and ``data`` inputs."""
    return load_setup(
        smk.wildcards.setup,
        smk.params.kind,
        smk.input.model,
        smk.input.data,
        device,
        examples=examples,
    )


def job_label(smk) -> str:
    """What a job works on, for its progress bars and log lines: the setup, and the
    example set (``examples`` wildcard) or the setup's own evaluation examples.

    >>> from types import SimpleNamespace
    >>> wildcards = SimpleNamespace(setup="mini_noisy", examples="test_errors")
    >>> job_label(SimpleNamespace(wildcards=wildcards))
    'mini_noisy, example set test_errors'
    >>> job_label(SimpleNamespace(wildcards=SimpleNamespace(setup="mini_digits")))
    'mini_digits, evaluation examples'
    """
    examples = getattr(smk.wildcards, "examples", None)
    where = f"example set {examples}" if examples else "evaluation examples"
    return f"{smk.wildcards.setup}, {where}"
