"""The paper's Coar-Edit experiments (Section 5) on in-memory models and data.

Each experiment scores components from attributions of example sets, sweeps k
greedily on validation and test data, picks k by the validation criterion
stated in its docstring, and returns the sweep, the chosen `Edit` and the
numbers before and after. Test data never influences the choice of k.

Every accuracy counts every example of its split: an example whose logits hold NaN or
inf under some edit has no prediction (its argmax would be arbitrary), which is a
failure that stops the experiment with an error naming the split, the examples and k,
never an example quietly counted right or wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from coar.attributions import Attributions
from coar.components import ComponentSpec
from coar.edit import (
    Edit,
    ablation_order,
    greedy_sweep,
    keep_mask,
    logits_under_masks,
    sweep_grid,
    welch_t,
)
from coar.evaluation import per_example_correlation
from coar.outputs import margin

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Inputs and labels of one evaluation split (plus groups where they exist)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    groups: np.ndarray | None = None


@dataclass
class EditResult:
    sweep: pd.DataFrame  # one row per k: {split}_{metric} columns
    edit: Edit
    summary: dict = field(default_factory=dict)  # before/after numbers at the chosen k


def attribution_rows(attributions: Attributions) -> np.ndarray:
    """One attribution vector per example: (N, |C|)."""
    return np.asarray(attributions.weight, dtype=np.float64).T


def _best(table: pd.DataFrame, feasible: np.ndarray, objective: str) -> int:
    """Row index maximising `objective` among feasible rows; ties go to the smaller k."""
    candidates = table[feasible]
    best = candidates[objective].max()
    return int(candidates.index[candidates[objective] == best][0])


def check_finite_logits(logits: torch.Tensor, split: str, ks=None) -> None:
    """Fail if the logits (K, E, classes) of any example under any of the K edits (k in
    ``ks``) hold NaN or inf, naming the split, the examples and the k."""
    bad = ~torch.isfinite(logits).all(-1)
    if bad.any():
        examples = bad.any(0).nonzero().flatten().tolist()
        edits = bad.any(1).nonzero().flatten().tolist()
        where = f" at k = {[int(ks[i]) for i in edits][:10]}" if ks is not None else ""
        raise ValueError(
            f"split {split!r}: the logits of {len(examples)} of {bad.shape[1]} examples hold "
            f"NaN or inf{where} (examples {examples[:10]}{' ...' if len(examples) > 10 else ''})"
            "; they have no prediction, so no accuracy can count them"
        )


def _finite(split: str, metrics, ks):
    """``metrics`` that first checks the logits of the split (see `check_finite_logits`)."""

    def checked(logits: torch.Tensor):
        check_finite_logits(logits, split, ks)
        return metrics(logits)

    return checked


def _progress(total: int, desc: str, unit: str) -> tqdm:
    """A progress bar for a step's log (a file): refreshed every few seconds."""
    return tqdm(total=total, desc=desc, unit=unit, mininterval=5)


def _ranked_sweep(
    model,
    spec,
    scores,
    direction: str,
    k_max: int,
    k_step: int,
    evaluations,
    desc: str,
    max_batch: int = 8192,
):
    """Components in ablation order for ``direction``, and the greedy sweep over k, with
    progress labelled ``desc``. The sweep runs a few k at a time (as many ablated models
    as one forward pass of `coar.edit.logits_under_masks` holds, ``max_batch`` pairs):
    its rows do not depend on each other, so the table is the one a single
    `coar.edit.greedy_sweep` call gives."""
    order = ablation_order(scores, direction)
    ks = sweep_grid(k_max, k_step, len(spec))
    largest = max(len(inputs) for inputs, _ in evaluations.values())
    per_call = max(1, max_batch // max(1, largest))
    parts = []
    with _progress(len(ks), f"{desc}: sweep over k", "k") as bar:
        for start in range(0, len(ks), per_call):
            chunk = ks[start : start + per_call]
            checked = {
                name: (inputs, _finite(name, metrics, chunk))
                for name, (inputs, metrics) in evaluations.items()
            }
            parts.append(greedy_sweep(model, spec, order, chunk, checked))
            bar.update(len(chunk))
    return order, pd.concat(parts, ignore_index=True)


def _before_after(sweep: pd.DataFrame, chosen: int, columns) -> dict[str, float]:
    """``<column>_before`` (the unedited model, k = 0) and ``<column>_after`` (the chosen
    row) for each sweep column."""
    before, after = sweep.iloc[0], sweep.loc[chosen]
    return {
        f"{column}_{when}": float(row[column])
        for column in columns
        for when, row in (("before", before), ("after", after))
    }


def _chosen_edit(setup, experiment, direction, order, k, spec, criterion, scores, **details):
    """The edit that ablates the first ``k`` components of ``order``, with their scores."""
    ablated = order[:k]
    details["scores"] = [float(scores[i]) for i in ablated]
    return Edit(setup, experiment, direction, ablated.tolist(), spec.names(), criterion, details)


def _labels_np(split: Split) -> np.ndarray:
    return split.labels.cpu().numpy()


# --- 5.2 forgetting a class -------------------------------------------------------------


def class_accuracy_metrics(labels: torch.Tensor, target_class: int):
    """Accuracy overall, per class present in the split, on the target and on the others."""
    labels_np = labels.cpu().numpy()
    classes = [int(c) for c in np.unique(labels_np)]
    if target_class not in classes:
        raise ValueError(f"class {target_class} has no examples in the split (classes {classes})")

    def metrics(logits: torch.Tensor) -> dict[str, np.ndarray]:
        correct = (logits.argmax(-1).numpy() == labels_np).astype(np.float64)
        per_class = {c: correct[:, labels_np == c].mean(1) for c in classes}
        others = np.mean([per_class[c] for c in per_class if c != target_class], axis=0)
        return {
            "accuracy": correct.mean(1),
            "target_accuracy": per_class[target_class],
            "others_accuracy": others,
            **{f"class{c}_accuracy": acc for c, acc in per_class.items()},
        }

    return metrics


def forget_class(
    setup: str,
    model: nn.Module,
    spec: ComponentSpec,
    attributions: Attributions,
    attribution_labels: np.ndarray,
    val: Split,
    test: Split,
    *,
    target_class: int,
    k_max: int,
    k_step: int,
    max_target_accuracy: float,
) -> EditResult:
    """Drive one class's accuracy down while keeping the others' (paper 5.2).

    Targets: the attributed examples of the class; references: the others.
    Direction ``lower``. Criterion: among the k whose validation accuracy on the
    class is at most ``max_target_accuracy``, the one with the highest
    validation mean accuracy of the other classes (smallest k on ties); if no k
    gets there, the k with the lowest validation accuracy on the class.
    """
    rows = attribution_rows(attributions)
    is_target = np.asarray(attribution_labels) == target_class
    if is_target.sum() < 1 or (~is_target).sum() < 2:
        raise ValueError(
            f"forget class {target_class}: attributions hold {is_target.sum()} target and "
            f"{(~is_target).sum()} reference examples"
        )
    scores = welch_t(rows[is_target], rows[~is_target])
    order, sweep = _ranked_sweep(
        model,
        spec,
        scores,
        "lower",
        k_max,
        k_step,
        {
            split_name: (split.inputs, class_accuracy_metrics(split.labels, target_class))
            for split_name, split in (("val", val), ("test", test))
        },
        f"forget {setup}, class {target_class}",
    )
    reached = (sweep["val_target_accuracy"] <= max_target_accuracy).to_numpy()
    if reached.any():
        chosen = _best(sweep, reached, "val_others_accuracy")
        criterion = (
            f"highest validation accuracy of the other classes among k with validation "
            f"accuracy of class {target_class} <= {max_target_accuracy}"
        )
    else:
        sweep["_neg_target"] = -sweep["val_target_accuracy"]
        chosen = _best(sweep, np.ones(len(sweep), dtype=bool), "_neg_target")
        sweep = sweep.drop(columns="_neg_target")
        criterion = (
            f"no k reached validation accuracy {max_target_accuracy} on class {target_class}: "
            "lowest validation accuracy on the class"
        )
    k = int(sweep.loc[chosen, "k"])
    summary = {
        "setup": setup,
        "target_class": target_class,
        "k": k,
        "n_components": len(spec),
        **_before_after(
            sweep,
            chosen,
            [
                f"{split}_{metric}"
                for split in ("val", "test")
                for metric in ("accuracy", "target_accuracy", "others_accuracy")
            ],
        ),
    }
    edit = _chosen_edit(
        setup, "forget", "lower", order, k, spec, criterion, scores, target_class=target_class
    )
    return EditResult(sweep, edit, summary)


# --- 5.3 subpopulation robustness ------------------------------------------------------


def group_metrics(labels: torch.Tensor, groups: np.ndarray):
    labels_np, groups = labels.cpu().numpy(), np.asarray(groups)
    names = np.unique(groups)

    def metrics(logits: torch.Tensor) -> dict[str, np.ndarray]:
        correct = (logits.argmax(-1).numpy() == labels_np).astype(np.float64)
        per_group = np.stack([correct[:, groups == g].mean(1) for g in names], axis=1)
        return {
            "accuracy": correct.mean(1),
            "group_average_accuracy": per_group.mean(1),
            "worst_group_accuracy": per_group.min(1),
            **{f"group{g}_accuracy": per_group[:, i] for i, g in enumerate(names)},
        }

    return metrics


def subpopulation_robustness(
    setup: str,
    model: nn.Module,
    spec: ComponentSpec,
    attributions: Attributions,
    attribution_groups: np.ndarray,
    val: Split,
    test: Split,
    *,
    target_groups: list[int] | str,
    k_max: int,
    k_step: int,
    max_accuracy_drop: float,
) -> EditResult:
    """Raise worst-group accuracy without lowering average accuracy much (paper 5.3).

    Targets: attributed examples of ``target_groups`` (``"worst"`` = the group
    with the lowest validation accuracy of the unedited model); references: the
    other groups' examples. Direction ``raise``. Criterion: the k with the
    highest validation worst-group accuracy among those whose validation
    average accuracy is at most ``max_accuracy_drop`` below the unedited
    model's (smallest k on ties).
    """
    rows = attribution_rows(attributions)
    groups = np.asarray(attribution_groups)
    val_metrics = group_metrics(val.labels, val.groups)
    if target_groups == "worst":
        base = val_metrics(
            logits_under_masks(model, spec, val.inputs, np.ones((1, len(spec)), bool))
        )
        names = np.unique(val.groups)
        per_group = [base[f"group{g}_accuracy"][0] for g in names]
        target_groups = [int(names[int(np.argmin(per_group))])]
    is_target = np.isin(groups, target_groups)
    scores = welch_t(rows[is_target], rows[~is_target])
    order, sweep = _ranked_sweep(
        model,
        spec,
        scores,
        "raise",
        k_max,
        k_step,
        {
            "val": (val.inputs, val_metrics),
            "test": (test.inputs, group_metrics(test.labels, test.groups)),
        },
        f"subpopulation {setup}",
    )
    feasible = (
        sweep["val_accuracy"] >= sweep["val_accuracy"].iloc[0] - max_accuracy_drop
    ).to_numpy()
    chosen = _best(sweep, feasible, "val_worst_group_accuracy")
    k = int(sweep.loc[chosen, "k"])
    summary = {
        "setup": setup,
        "target_groups": ",".join(map(str, target_groups)),
        "k": k,
        "n_components": len(spec),
        **_before_after(
            sweep,
            chosen,
            [
                f"{split}_{metric}"
                for split in ("val", "test")
                for metric in ("accuracy", "group_average_accuracy", "worst_group_accuracy")
            ],
        ),
    }
    criterion = (
        "highest validation worst-group accuracy among k with validation average accuracy "
        f"at most {max_accuracy_drop} below the unedited model's"
    )
    edit = _chosen_edit(
        setup,
        "subpopulation",
        "raise",
        order,
        k,
        spec,
        criterion,
        scores,
        target_groups=list(target_groups),
    )
    return EditResult(sweep, edit, summary)


# --- 5.4 backdoor ------------------------------------------------------------------------


@torch.no_grad()
def paired_output_correlation(
    model: nn.Module, spec: ComponentSpec, keep: np.ndarray, clean: Split, triggered: Split
) -> float:
    """Pearson correlation over examples of the margins on clean and triggered copies.

    NaN where the margins of either copy do not vary (undefined, logged); NaN or inf
    logits raise a ValueError naming the pairs."""
    logits = logits_under_masks(
        model, spec, torch.cat([clean.inputs, triggered.inputs]), keep[None]
    )
    n = len(clean.labels)
    check_finite_logits(logits[:, :n], "clean copies of the pairs")
    check_finite_logits(logits[:, n:], "triggered copies of the pairs")
    margins = margin(logits[0], torch.cat([clean.labels, triggered.labels]).cpu()).numpy()
    corr = float(per_example_correlation(margins[:n, None], margins[n:, None])[0])
    if np.isnan(corr):
        log.warning(
            "paired output correlation over %d pairs is undefined: the margins of the clean "
            "or the triggered copies do not vary",
            n,
        )
    return corr


def remove_backdoor(
    setup: str,
    model: nn.Module,
    spec: ComponentSpec,
    triggered_attributions: Attributions,
    clean_attributions: Attributions,
    val: Split,
    val_triggered: Split,
    test: Split,
    test_triggered: Split,
    *,
    target_class: int | None,
    k_max: int,
    k_step: int,
    max_clean_drop: float,
    experiment: str = "backdoor",
) -> EditResult:
    """Undo a planted trigger (paper 5.4) or a typographic attack (5.5).

    Targets: triggered (attacked) training images with their true labels;
    references: the same images without the trigger. Direction ``raise``.
    Triggered accuracy counts the images whose true class is not
    ``target_class`` (None: all images). Criterion: the k with
    the highest validation triggered accuracy among those whose validation
    clean accuracy is at most ``max_clean_drop`` below the unedited model's
    (smallest k on ties); ``k_max`` bounds the edit's size.
    """
    if list(triggered_attributions.example_ids) != list(clean_attributions.example_ids):
        raise ValueError("triggered and clean attributions must cover the same (paired) images")
    scores = welch_t(attribution_rows(triggered_attributions), attribution_rows(clean_attributions))

    def non_target(split: Split) -> Split:
        if target_class is None:
            return split
        keep = split.labels != target_class
        return Split(split.inputs[keep], split.labels[keep])

    evaluations = {
        name: (split.inputs, accuracy_only(split.labels))
        for name, split in (
            ("val_clean", val),
            ("val_triggered", non_target(val_triggered)),
            ("test_clean", test),
            ("test_triggered", non_target(test_triggered)),
        )
    }
    order, sweep = _ranked_sweep(
        model, spec, scores, "raise", k_max, k_step, evaluations, f"{experiment} {setup}"
    )
    feasible = (
        sweep["val_clean_accuracy"] >= sweep["val_clean_accuracy"].iloc[0] - max_clean_drop
    ).to_numpy()
    chosen = _best(sweep, feasible, "val_triggered_accuracy")
    k = int(sweep.loc[chosen, "k"])
    pairs_clean, pairs_triggered = non_target(test), non_target(test_triggered)
    summary = {
        "setup": setup,
        "k": k,
        "n_components": len(spec),
        "fraction_ablated": k / len(spec),
        **_before_after(sweep, chosen, [f"{split}_accuracy" for split in evaluations]),
        **{
            f"test_paired_correlation_{when}": paired_output_correlation(
                model, spec, keep_mask(len(spec), order[:kk]), pairs_clean, pairs_triggered
            )
            for when, kk in (("before", 0), ("after", k))
        },
    }
    criterion = (
        f"highest validation triggered accuracy among k <= {k_max} with validation "
        f"clean accuracy at most {max_clean_drop} below the unedited model's"
    )
    edit = _chosen_edit(
        setup, experiment, "raise", order, k, spec, criterion, scores, target_class=target_class
    )
    return EditResult(sweep, edit, summary)


def accuracy_only(labels: torch.Tensor):
    labels_np = labels.cpu().numpy()

    def metrics(logits: torch.Tensor) -> dict[str, np.ndarray]:
        return {"accuracy": (logits.argmax(-1).numpy() == labels_np).mean(1)}

    return metrics


# --- 5.1 fixing individual errors -----------------------------------------------------


def _accuracy(
    model, spec, keep: np.ndarray, split: Split, exclude: int | None = None, name: str = "?"
) -> float:
    logits = logits_under_masks(model, spec, split.inputs, keep[None])
    check_finite_logits(logits, name, [int((~keep).sum())])
    correct = (logits[0].argmax(-1).numpy() == _labels_np(split)).astype(np.float64)
    if exclude is not None:
        correct = np.delete(correct, exclude)
    return float(correct.mean())


def fix_errors(
    setup: str,
    model: nn.Module,
    spec: ComponentSpec,
    error_attributions: Attributions,
    reference_attributions: Attributions,
    train: Split,
    val: Split,
    test: Split,
    *,
    k_max: int,
    max_val_drop: float,
    max_tries: int = 5,
) -> tuple[pd.DataFrame, list[Edit]]:
    """Fix each misclassified test example on its own with few components (paper 5.1).

    For each error: target = that example (one attribution vector, see
    `welch_t`), references = the reference set. Direction ``raise``. The
    example's prediction is checked after every added component (k = 1..k_max).
    Criterion: the smallest k that fixes the example and keeps validation
    accuracy at most ``max_val_drop`` below the unedited model's (the first
    ``max_tries`` fixing k are tried). The accuracy change is measured on the
    training set and on the other test examples.
    """
    reference = attribution_rows(reference_attributions)
    errors = attribution_rows(error_attributions)
    keep_all = np.ones(len(spec), dtype=bool)
    base = {
        "train": _accuracy(model, spec, keep_all, train, name="train"),
        "val": _accuracy(model, spec, keep_all, val, name="val"),
    }
    rows, edits = [], []
    bar = _progress(len(error_attributions.example_ids), f"errors {setup}: fix each", "error")
    for j, example in enumerate(error_attributions.example_ids):
        x, y = test.inputs[example : example + 1], int(test.labels[example])
        scores = welch_t(errors[j : j + 1], reference)
        order = ablation_order(scores, "raise")
        ks = list(range(1, min(k_max, len(spec)) + 1))
        masks = np.stack([keep_mask(len(spec), order[:k]) for k in ks])
        logits = logits_under_masks(model, spec, x, masks)
        check_finite_logits(logits, f"test (error example {int(example)})", ks)
        preds = logits[:, 0].argmax(-1).numpy()
        before = logits_under_masks(model, spec, x, keep_all[None])
        check_finite_logits(before, f"test (error example {int(example)})", [0])
        before_pred = int(before[0, 0].argmax())
        fixing = [k for k, p in zip(ks, preds, strict=True) if p == y][:max_tries]
        row = {
            "example": int(example),
            "label": y,
            "prediction_before": before_pred,
            "fixed": False,
        }
        for k in fixing:
            keep = keep_mask(len(spec), order[:k])
            val_acc = _accuracy(model, spec, keep, val, name="val")
            if val_acc >= base["val"] - max_val_drop:
                row.update(
                    fixed=True,
                    k=k,
                    val_change=val_acc - base["val"],
                    train_change=_accuracy(model, spec, keep, train, name="train") - base["train"],
                    test_change=_accuracy(model, spec, keep, test, exclude=example, name="test")
                    - _accuracy(model, spec, keep_all, test, exclude=example, name="test"),
                )
                edits.append(
                    Edit(
                        setup,
                        "errors",
                        "raise",
                        order[:k].tolist(),
                        spec.names(),
                        f"smallest k <= {k_max} that fixes test example {example} with validation "
                        f"accuracy at most {max_val_drop} below the unedited model's",
                        {"example": int(example), "label": y},
                    )
                )
                break
        rows.append(row)
        bar.set_postfix_str(f"{len(edits)} fixed", refresh=False)
        bar.update()
    bar.close()
    table = pd.DataFrame(rows)
    for column in ("k", "val_change", "train_change", "test_change"):
        if column not in table:
            table[column] = np.nan
    return table, edits
