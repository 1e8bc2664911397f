"""Glue between the workflow's files and the Coar-Edit experiments."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from coar.atomic import atomic_path
from coar.device import resolve_device
from coar_replication.edit_experiments import Split
from coar_replication.setup import Setup
from coar_replication.setups import load_setup

log = logging.getLogger(__name__)


class SetupSplits:
    """One setup's model with any of its data splits, loaded on demand.

    An experiment asks for its splits by role (``val``, ``test``, ``val_triggered``...);
    ``splits`` (config: ``edits.<experiment>.splits``) maps a role to the setup's split
    of another name, e.g. the validation and test parts carved out of a paper setup's
    evaluation set. Roles it does not map are split names themselves.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        model_path,
        data_path,
        device: torch.device,
        splits: dict[str, str] | None = None,
    ):
        self.args = (name, kind, model_path, data_path, device)
        self.roles = dict(splits or {})
        self.setup: Setup = self.load(self.name_of("test"))
        self.model, self.spec = self.setup.model.eval(), self.setup.spec

    @classmethod
    def of_rule(cls, smk) -> SetupSplits:
        """The setup of an edit rule's job: its ``setup`` wildcard, ``kind``, ``device`` and
        ``edit`` (the experiment's config, with its optional ``splits``) params, and its
        ``model`` and ``data`` inputs."""
        return cls(
            smk.wildcards.setup,
            smk.params.kind,
            smk.input.model,
            smk.input.data,
            resolve_device(smk.params.device),
            splits=smk.params.edit.get("splits"),
        )

    def name_of(self, role: str) -> str:
        """The setup's split that plays ``role``."""
        return self.roles.get(role, role)

    def load(self, split: str) -> Setup:
        return load_setup(*self.args, examples={"split": split, "select": "all"})

    def split(self, role: str) -> Split:
        name = self.name_of(role)
        # The test split is loaded already: no second copy on the device.
        setup = self.setup if name == self.name_of("test") else self.load(name)
        return Split(setup.inputs, setup.labels, setup.groups)


def write_json(data: dict, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(table, path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")


def log_summary(summary: dict, experiment: str, path) -> None:
    """Log an experiment's numbers (``summary``, written to ``path``) as ``SUMMARY.md``
    shows them: a sentence and a table of before and after."""
    from coar_workflow.summary import edit_section

    lines, _ = edit_section([summary], summary["setup"], experiment, f"`{Path(path)}`")
    log.info("\n%s", "\n".join(lines))


def check_edited_accuracy(edited: torch.nn.Module, split: Split, expected: float) -> float:
    """The zeroed-weights model must reproduce the sweep's (masked) accuracy exactly."""
    from coar_replication.training import accuracy

    measured = accuracy(edited, split.inputs, split.labels)
    if abs(measured - expected) > 0.5 / len(split.labels):
        raise RuntimeError(
            f"edited model's accuracy {measured:.4f} differs from the sweep's {expected:.4f}: "
            "the masked evaluation and the zeroed weights disagree"
        )
    return measured


def save_experiment(result, data: SetupSplits, outputs, accuracy_key: str) -> None:
    """Write an experiment's sweep and summary, apply its edit permanently, check that the
    zeroed-weights model reproduces the sweep's test accuracy, and save it with its record."""
    from coar.edit import apply_edit
    from coar_replication.checkpoints import save_edited_model

    write_csv(result.sweep, outputs.sweep)
    write_json(result.summary, outputs.summary)
    log_summary(result.summary, result.edit.experiment, outputs.summary)
    edited = apply_edit(data.model, data.spec, result.edit.ablated)
    check_edited_accuracy(edited, data.split("test"), result.summary[accuracy_key])
    save_edited_model(edited, result.edit, outputs.model, metrics=result.summary)
