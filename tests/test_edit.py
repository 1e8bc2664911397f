"""Coar-Edit library: scores, ordering, sweeps, permanent edits, example sets, data variants."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from coar.attributions import Attributions
from coar.components import ComponentSpec, conv_filters
from coar.edit import (
    Edit,
    ablation_order,
    accuracy_metrics,
    apply_edit,
    greedy_sweep,
    keep_mask,
    sweep_grid,
    welch_t,
)
from coar.outputs import margin
from coar_replication.checkpoints import load_model, save_edited_model
from coar_replication.data import digits_split
from coar_replication.edit_data import backdoor_digits, spurious_digits
from coar_replication.edit_examples import (
    select_examples,
    selected_ids,
    selection_record,
    with_selected_ids,
)
from coar_replication.edit_experiments import Split, _ranked_sweep, forget_class
from coar_replication.setup import Setup


def test_welch_t_is_scipys_welch_test():
    rng = np.random.default_rng(0)
    target, reference = rng.normal(1, 2, (7, 30)), rng.normal(0, 1, (12, 30))
    expected = stats.ttest_ind(target, reference, equal_var=False, axis=0).statistic
    np.testing.assert_allclose(welch_t(target, reference), expected, rtol=1e-12)


def test_welch_t_single_target_is_the_one_sample_limit():
    rng = np.random.default_rng(1)
    target, reference = rng.normal(size=(1, 20)), rng.normal(size=(9, 20))
    expected = -stats.ttest_1samp(reference, target[0], axis=0).statistic
    np.testing.assert_allclose(welch_t(target, reference), expected, rtol=1e-12)


def test_welch_t_constant_component_scores_zero_and_bad_shapes_are_named():
    target, reference = np.ones((3, 2)), np.ones((4, 2))
    target[:, 1] = [1, 2, 3]
    scores = welch_t(target, reference)
    assert scores[0] == 0 and np.isfinite(scores[1])
    with pytest.raises(ValueError, match="components"):
        welch_t(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="reference"):
        welch_t(np.ones((2, 3)), np.ones((1, 3)))


def test_ablation_order_direction():
    scores = np.array([0.5, -2.0, 3.0, 0.0])
    assert ablation_order(scores, "raise").tolist() == [1, 3, 0, 2]
    assert ablation_order(scores, "lower").tolist() == [2, 0, 3, 1]
    with pytest.raises(ValueError, match="direction"):
        ablation_order(scores, "up")


def test_sweep_grid_ends_at_k_max():
    assert sweep_grid(7, 3, 100) == [0, 3, 6, 7]
    assert sweep_grid(50, 10, 20) == [0, 10, 20]


def test_greedy_sweep_equals_zeroed_weights(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    with torch.no_grad():
        y = tiny_resnet(x).argmax(1)
    order = np.random.default_rng(0).permutation(len(spec))
    ks = [0, 3, 10, 25]
    sweep = greedy_sweep(tiny_resnet, spec, order, ks, {"test": (x, accuracy_metrics(y))})
    assert sweep.loc[0, "test_accuracy"] == 1.0
    for k, acc in zip(ks, sweep.test_accuracy, strict=True):
        edited = apply_edit(copy.deepcopy(tiny_resnet), spec, order[:k])
        with torch.no_grad():
            assert acc == (edited(x).argmax(1) == y).double().mean().item()


def test_a_sweep_run_a_few_k_at_a_time_is_the_single_sweep_with_progress(tiny_resnet, capsys):
    spec = conv_filters(tiny_resnet)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = tiny_resnet(x).argmax(1)
    scores = np.random.default_rng(0).normal(size=len(spec))
    evaluations = {"val": (x[:40], accuracy_metrics(y[:40])), "test": (x, accuracy_metrics(y))}
    args = (tiny_resnet, spec, scores, "lower", 30, 4, evaluations, "forget tiny, class 3")
    order, whole = _ranked_sweep(*args)
    chunked_order, chunked = _ranked_sweep(*args, max_batch=3 * 64)  # 3 k per call
    pd.testing.assert_frame_equal(chunked, whole)
    assert (chunked_order == order).all() and len(whole) == len(sweep_grid(30, 4, len(spec)))
    assert "forget tiny, class 3: sweep over k: 100%" in capsys.readouterr().err


class Reciprocal(torch.nn.Module):
    def forward(self, h):
        return 1 / h


def test_a_sweep_a_few_k_at_a_time_names_the_k_whose_logits_are_not_finite():
    # Ablating any neuron of layer 0 zeroes it and the next layer divides by it: every
    # k >= 1 gives inf; the error must name those k, not positions within a call.
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4, bias=False), Reciprocal(), torch.nn.Linear(4, 2)
    )
    spec = ComponentSpec([("0", 4)])
    x, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(6).long()
    evaluations = {"val": (x, accuracy_metrics(y))}
    with pytest.raises(ValueError, match=r"split 'val': .* NaN or inf at k = \[2\]"):
        _ranked_sweep(model, spec, np.zeros(4), "lower", 4, 2, evaluations, "d", max_batch=6)


def test_edited_model_saves_what_was_ablated_and_why(tiny_resnet, tmp_path):
    spec = conv_filters(tiny_resnet)
    edit = Edit("s", "forget", "lower", [3, 1], spec.names(), "because", {"target_class": 2})
    apply_edit(tiny_resnet, spec, edit.ablated)
    save_edited_model(tiny_resnet, edit, tmp_path / "m.pt", metrics={"acc": 0.5})
    checkpoint = torch.load(tmp_path / "m.pt", weights_only=True)
    assert checkpoint["edit"]["ablated_names"] == ["conv1[3]", "conv1[1]"]
    assert checkpoint["edit"]["criterion"] == "because" and checkpoint["edit"]["k"] == 2
    reloaded = load_model(tmp_path / "m.pt")
    assert reloaded.conv1.weight[[1, 3]].abs().sum() == 0
    assert reloaded.conv1.weight[0].abs().sum() > 0


def test_keep_mask():
    assert keep_mask(4, [0, 2]).tolist() == [False, True, False, True]


def _setup(labels, groups=None):
    n = len(labels)
    return Setup(
        "s",
        torch.nn.Identity(),
        None,
        torch.zeros(n, 1),
        torch.as_tensor(labels),
        margin,
        groups=groups,
    )


def test_example_selections_are_seeded_and_paired():
    labels = np.repeat(np.arange(5), 10)
    setup = _setup(labels, groups=labels % 2)
    per_class = selected_ids(setup, {"split": "train", "select": "per_class", "n": 3, "seed": 0})
    assert np.bincount(labels[per_class]).tolist() == [3] * 5
    per_group = selected_ids(setup, {"split": "x", "select": "per_group", "n": 4, "seed": 0})
    assert np.bincount(labels[per_group] % 2).tolist() == [4, 4]
    clean = {"split": "clean", "select": "random", "n": 8, "seed": 3, "exclude_classes": [0]}
    ids = selected_ids(setup, clean)
    assert (labels[ids] != 0).all()
    # A triggered copy with the same labels selects the same rows.
    assert selected_ids(_setup(labels), {**clean, "split": "triggered"}).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="only 10 available"):
        selected_ids(setup, {"split": "train", "select": "per_class", "n": 11})


def test_misclassified_selection_draws_n_of_the_errors_seeded():
    # The "model" passes one-hot predictions through: examples 3k + 1 are wrong (16 of 48).
    labels = np.arange(48) % 4
    predictions = labels.copy()
    wrong = np.arange(1, 48, 3)
    predictions[wrong] = (labels[wrong] + 1) % 4
    setup = _setup(labels)
    setup.inputs = torch.nn.functional.one_hot(torch.as_tensor(predictions), 4).float()
    errors = {"split": "edit_test", "select": "misclassified"}
    assert selected_ids(setup, errors).tolist() == wrong.tolist()
    some = selected_ids(setup, {**errors, "n": 5, "seed": 1})
    assert len(some) == 5 and set(some) <= set(wrong) and (np.diff(some) > 0).all()
    assert selected_ids(setup, {**errors, "n": 5, "seed": 1}).tolist() == some.tolist()
    others = [selected_ids(setup, {**errors, "n": 5, "seed": s}).tolist() for s in range(2, 6)]
    assert any(o != some.tolist() for o in others)
    assert selected_ids(setup, {**errors, "n": 16}).tolist() == wrong.tolist()
    assert selected_ids(setup, {**errors, "n": 100}).tolist() == wrong.tolist()
    setup.inputs = torch.nn.functional.one_hot(torch.as_tensor(labels), 4).float()
    with pytest.raises(ValueError, match="makes no errors"):
        selected_ids(setup, errors)


def test_a_selection_made_once_is_read_back_as_it_was(tmp_path):
    """select_examples records a selection that depends on the model; shards and fit take
    the recorded positions, whatever the model predicts where they run."""
    labels = np.arange(12) % 3
    setup = _setup(labels)
    setup.inputs = torch.nn.functional.one_hot(torch.as_tensor((labels + 1) % 3), 3).float()
    errors = {"split": "edit_test", "select": "misclassified", "n": 4, "seed": 2}
    record = selection_record(setup, errors)
    assert record["n_split"] == 12 and len(record["ids"]) == 4
    (tmp_path / "s.json").write_text(json.dumps(record))
    recorded = with_selected_ids(errors, tmp_path / "s.json")
    assert recorded == {**errors, "ids": record["ids"]}
    setup.inputs = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).float()  # no errors
    assert select_examples(setup, recorded).example_ids.tolist() == record["ids"]
    assert with_selected_ids(errors, None) is errors and with_selected_ids(None, "x") is None
    with pytest.raises(ValueError, match="records the selection"):
        with_selected_ids({**errors, "seed": 3}, tmp_path / "s.json")
    with pytest.raises(ValueError, match="outside the split"):
        selected_ids(setup, {**errors, "ids": [3, 12]})
    with pytest.raises(ValueError, match="ascending"):
        selected_ids(setup, {**errors, "ids": [5, 3]})


def test_digits_validation_split_leaves_test_alone():
    plain, with_val = digits_split(0.2, 0), digits_split(0.2, 0, val_fraction=0.1)
    np.testing.assert_array_equal(plain["y_test"], with_val["y_test"])
    assert len(with_val["y_val"]) == 180
    assert len(with_val["y_train"]) + 180 == len(plain["y_train"])


def test_spurious_digits_correlates_only_in_training():
    arrays = spurious_digits(digits_split(0.2, 0, 0.1), correlation=0.9, seed=0)
    for split, lo, hi in (("train", 0.85, 0.95), ("test", 0.4, 0.6)):
        label, attribute = arrays[f"y_{split}"], arrays[f"g_{split}"] % 2
        assert lo < (label == attribute).mean() < hi
        assert set(np.unique(arrays[f"g_{split}"])) == {0, 1, 2, 3}


def test_backdoor_digits_poisons_training_and_pairs_triggered_copies():
    arrays = backdoor_digits(digits_split(0.2, 0, 0.1), 0, 0.1, 2, seed=0)
    poisoned = arrays["poisoned_train"]
    assert abs(poisoned.mean() - 0.1) < 0.01 and (arrays["y_train"][poisoned] == 0).all()
    corner = arrays["x_train_triggered"][..., -2:, -2:]
    assert (corner == corner.max()).all()
    np.testing.assert_array_equal(arrays["y_train_triggered"], arrays["y_train_clean"])
    np.testing.assert_array_equal(arrays["y_test_triggered"], arrays["y_test"])


def test_forget_class_picks_k_on_validation(tiny_resnet):
    """Scores from fake attributions: the sweep and choice follow the stated criterion."""
    spec = conv_filters(tiny_resnet)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 1, 8, 8, generator=generator)
    with torch.no_grad():
        y = tiny_resnet(x).argmax(1)
    rng = np.random.default_rng(0)
    labels = y[:40].numpy()
    target = int(np.bincount(labels).argmax())
    weight = rng.normal(size=(len(spec), 40))
    attributions = Attributions(weight, np.zeros(40), spec.names(), list(range(40)))
    result = forget_class(
        "s",
        tiny_resnet,
        spec,
        attributions,
        labels,
        Split(x[:60], y[:60]),
        Split(x[60:], y[60:]),
        target_class=target,
        k_max=20,
        k_step=5,
        max_target_accuracy=0.2,
    )
    assert result.sweep.k.tolist() == [0, 5, 10, 15, 20]
    assert result.sweep.val_target_accuracy.iloc[0] == 1.0
    chosen = result.sweep[result.sweep.k == result.edit.k].iloc[0]
    reached = result.sweep[result.sweep.val_target_accuracy <= 0.2]
    if len(reached):
        assert chosen.val_others_accuracy == reached.val_others_accuracy.max()
    else:
        assert chosen.val_target_accuracy == result.sweep.val_target_accuracy.min()
    assert result.summary["test_target_accuracy_before"] == 1.0
