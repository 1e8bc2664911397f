"""Coar-Edit: turn attributions into model edits by ablating components.

Given target examples T (behaviour to change) and reference examples R
(behaviour to keep), each component gets Welch's t-statistic between the
attributions of T and of R. Ablating the components with the *lowest*
statistic raises the targets' outputs relative to the references (direction
``raise``); ablating those with the *highest* lowers them (``lower``). The
number k of ablated components is swept greedily (components are added one at
a time in score order, the model is evaluated every few steps), k is chosen on
validation data by a criterion stated per experiment, and the edit is applied
permanently by zeroing the chosen components' weights.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from coar.components import ComponentSpec, zero_components
from coar.masking import Inputs, MaskedModel, batch_size_of
from coar.outputs import logits_of

log = logging.getLogger(__name__)

DIRECTIONS = ("raise", "lower")


def welch_t(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Welch's t-statistic per component between target and reference attributions.

    ``target`` (n_t, |C|) and ``reference`` (n_r, |C|) hold one attribution
    vector per example. With n_t >= 2 this is exactly
    ``scipy.stats.ttest_ind(target, reference, equal_var=False).statistic``.
    With a single target example (editing one prediction) the target's sample
    variance is undefined; its term is taken as zero, which is the one-sample
    statistic ``(x_t - mean(R)) / (s_R / sqrt(n_r))`` (Welch's limit for a
    known target value). A component whose attributions are constant in both
    groups carries no evidence and gets 0.

    >>> target = np.array([[2.0, 0.0], [3.0, 0.0]])  # 2 examples x 2 components
    >>> reference = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    >>> welch_t(target, reference).round(2)  # component 1 carries no evidence
    array([3.46, 0.  ])
    """
    target = np.atleast_2d(np.asarray(target, dtype=np.float64))
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    if target.shape[1] != reference.shape[1]:
        raise ValueError(
            f"target has {target.shape[1]} components, reference has {reference.shape[1]}"
        )
    if len(reference) < 2:
        raise ValueError(f"need at least 2 reference examples, got {len(reference)}")
    if len(target) == 0:
        raise ValueError("need at least 1 target example")
    # Constant components give 0/0 (NaN, handled below); scipy warns about them.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(target) == 1:
            spread = reference.std(axis=0, ddof=1) / np.sqrt(len(reference))
            t = (target[0] - reference.mean(axis=0)) / spread
        else:
            t = stats.ttest_ind(target, reference, equal_var=False, axis=0).statistic
    t = np.asarray(t, dtype=np.float64)
    t[np.isnan(t)] = 0.0
    return t


def ablation_order(scores: np.ndarray, direction: str) -> np.ndarray:
    """Component indices in the order Coar-Edit ablates them.

    ``raise``: lowest statistic first (raises target outputs relative to the
    references); ``lower``: highest first. Ties break by component index.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    scores = np.asarray(scores, dtype=np.float64)
    key = scores if direction == "raise" else -scores
    return np.argsort(key, kind="stable")


def keep_mask(n_components: int, ablated: Sequence[int]) -> np.ndarray:
    keep = np.ones(n_components, dtype=bool)
    keep[np.asarray(ablated, dtype=np.int64)] = False
    return keep


def sweep_grid(k_max: int, step: int, n_components: int) -> list[int]:
    """k = 0, step, 2*step, ... up to k_max (capped at the number of components)."""
    if step < 1 or k_max < 0:
        raise ValueError(f"need k_max >= 0 and step >= 1, got k_max={k_max}, step={step}")
    k_max = min(k_max, n_components)
    grid = list(range(0, k_max + 1, step))
    if grid[-1] != k_max:
        grid.append(k_max)
    return grid


@torch.no_grad()
def logits_under_masks(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    masks: np.ndarray,
    max_batch: int = 8192,
) -> torch.Tensor:
    """Logits of every ablated model on every input: (K, E, ...) (classes, or positions
    and vocabulary), on the CPU. ``inputs``: a tensor, or a mapping of keyword tensors;
    the model may return logits or an object with ``.logits`` (Hugging Face)."""
    masked = MaskedModel(model.eval(), spec)
    n_examples = batch_size_of(inputs)
    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    masks_t = torch.as_tensor(np.asarray(masks, dtype=bool), device=first.device)
    per_pass = max(1, max_batch // max(1, n_examples))
    out = []
    for k0 in range(0, len(masks_t), per_pass):
        chunk = masks_t[k0 : k0 + per_pass]
        logits = logits_of(masked(inputs, chunk)).float().cpu()
        out.append(logits.view(len(chunk), n_examples, *logits.shape[1:]))
    return torch.cat(out)


Metrics = Callable[[torch.Tensor], dict[str, float]]


def greedy_sweep(
    model: nn.Module,
    spec: ComponentSpec,
    order: np.ndarray,
    ks: Sequence[int],
    evaluations: dict[str, tuple[Inputs, Metrics]],
) -> pd.DataFrame:
    """Ablate order[:k] for each k and evaluate: one row per k.

    ``evaluations`` maps a split name to (inputs, metrics) where ``metrics``
    turns the logits (K, E, classes) of the K ablated models into named
    per-model arrays; columns are ``{split}_{metric}``.

    >>> from coar.components import ComponentSpec
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    >>> spec = ComponentSpec([("0", 4)])  # the first layer's 4 neurons
    >>> x, y = torch.randn(6, 3), torch.zeros(6, dtype=torch.long)
    >>> table = greedy_sweep(model, spec, np.array([3, 1, 0, 2]), [0, 2, 4],
    ...                      {"val": (x, accuracy_metrics(y))})
    >>> list(table.columns), len(table)
    (['k', 'val_accuracy'], 3)
    """
    masks = np.stack([keep_mask(len(spec), order[:k]) for k in ks])
    table = pd.DataFrame({"k": list(ks)})
    for split, (inputs, metrics) in evaluations.items():
        logits = logits_under_masks(model, spec, inputs, masks)
        for name, values in metrics(logits).items():
            table[f"{split}_{name}"] = np.asarray(values, dtype=np.float64)
    return table


def accuracy_metrics(labels: torch.Tensor, groups: dict[str, np.ndarray] | None = None) -> Metrics:
    """Accuracy overall and per named group of examples (boolean selectors)."""
    labels = labels.cpu()

    def metrics(logits: torch.Tensor) -> dict[str, np.ndarray]:
        correct = (logits.argmax(-1) == labels).double().numpy()  # (K, E)
        out = {"accuracy": correct.mean(1)}
        for name, selector in (groups or {}).items():
            selector = np.asarray(selector, dtype=bool)
            if not selector.any():
                raise ValueError(f"group {name!r} has no examples")
            out[f"accuracy_{name}"] = correct[:, selector].mean(1)
        return out

    return metrics


@dataclass
class Edit:
    """A permanent edit: which components to zero, and why.

    >>> edit = Edit("model", "forget", "lower", [2], ["fc.0", "fc.1", "fc.2"], "k=1")
    >>> edit.k, edit.record()["ablated_names"]
    (1, ['fc.2'])
    """

    setup: str
    experiment: str
    direction: str
    ablated: list[int]
    component_names: list[str]
    criterion: str
    details: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.ablated)

    def record(self) -> dict:
        """Plain types only, so the saved model loads with weights_only=True."""
        return {
            "setup": self.setup,
            "experiment": self.experiment,
            "direction": self.direction,
            "k": self.k,
            "ablated": [int(i) for i in self.ablated],
            "ablated_names": [self.component_names[i] for i in self.ablated],
            "criterion": self.criterion,
            **self.details,
        }


def apply_edit(model: nn.Module, spec: ComponentSpec, ablated: Sequence[int]) -> nn.Module:
    """Zero the weights of the ablated components in place (the permanent edit).

    >>> from coar.components import ComponentSpec
    >>> layer = nn.Sequential(nn.Linear(2, 3))
    >>> _ = apply_edit(layer, ComponentSpec([("0", 3)]), [1])
    >>> layer[0].weight[1].abs().sum().item()
    0.0
    """
    return zero_components(model, spec, torch.from_numpy(keep_mask(len(spec), ablated)))
