"""Faults: a summary never improves because examples failed.

Undefined per-example statistics (constant outputs or predictions) are counted and make
the mean NaN; NaN or inf in attributions, outputs or logits stop the step with an error
naming the file (or split) and the examples.
"""

import numpy as np
import pandas as pd
import pytest
import torch

import coar
from coar.attributions import Attributions
from coar.components import conv_filters
from coar.evaluation import evaluate_methods, summarize_correlations, undefined_report
from coar_replication.edit_experiments import Split, forget_class, paired_output_correlation
from coar_replication.published import compare_published
from coar_workflow import summary as summary_mod

SUMMARY = ["method", "alpha_test", "mean_corr", "ci_low", "ci_high", "n_examples", "n_undefined"]


def _linear_setup(tmp_path, n=8, p=12, k=100, alphas=(0.1,), seed=0):
    """Exact attributions of a linear 'model' and its true outputs files."""
    rng = np.random.default_rng(seed)
    weight, bias = rng.standard_normal((p, n)), rng.standard_normal(n)
    exact = Attributions(weight, bias, [f"c{i}" for i in range(p)], list(range(n)))
    paths = []
    for alpha in alphas:
        masks = rng.random((k, p)) >= alpha
        path = tmp_path / f"true_outputs_alpha{alpha}.npz"
        np.savez(path, alpha=alpha, masks=masks, outputs=exact.predict(masks))
        paths.append(path)
    return exact, paths, rng


def _with_columns(attributions, weight=None, bias=None, **meta):
    return Attributions(
        attributions.weight if weight is None else weight,
        attributions.bias if bias is None else bias,
        attributions.component_names,
        attributions.example_ids,
        meta=meta,
    )


# --- coar.evaluation: undefined correlations are counted, not dropped --------------------


def test_zeroing_an_examples_attributions_cannot_raise_the_headline(tmp_path):
    exact, paths, rng = _linear_setup(tmp_path, alphas=(0.1, 0.2))
    # A baseline whose attributions are poor on examples 0-2 (pure noise) ...
    poor = exact.weight.copy()
    poor[:, :3] = rng.standard_normal((poor.shape[0], 3))
    noisy = _with_columns(exact, weight=poor)
    # ... and the same baseline giving all-zero attributions there instead: a constant
    # prediction, so those examples have no correlation (a legitimate outcome).
    zeroed_weight = poor.copy()
    zeroed_weight[:, :3] = 0.0
    zeroed = _with_columns(exact, weight=zeroed_weight)
    summary, per_example = evaluate_methods({"noisy": noisy, "zeroed": zeroed}, paths, n_boot=200)
    rows = summary.set_index(["method", "alpha_test"])
    for alpha in (0.1, 0.2):
        noisy_row, zeroed_row = rows.loc[("noisy", alpha)], rows.loc[("zeroed", alpha)]
        assert np.isfinite(noisy_row.mean_corr)
        # Old code: the mean over the 5 remaining examples, higher than the noisy one's.
        assert not zeroed_row.mean_corr > noisy_row.mean_corr
        assert noisy_row.n_undefined == 0
        assert np.isnan([zeroed_row.mean_corr, zeroed_row.ci_low, zeroed_row.ci_high]).all()
        assert (zeroed_row.n_examples, zeroed_row.n_undefined) == (8, 3)
    assert list(summary.columns) == SUMMARY
    undefined = per_example[per_example.method == "zeroed"].groupby("alpha_test")["corr"]
    assert (undefined.apply(lambda c: c.isna().sum()) == 3).all()
    report = undefined_report(summary, per_example)
    assert len(report) == 2
    assert report[0].startswith("method 'zeroed' at alpha_test 0.1: 3 of 8 examples")
    assert "examples [0, 1, 2]" in report[0]


def test_summarize_correlations_is_over_all_examples_or_nan():
    full = summarize_correlations(np.array([0.2, 0.4, 0.6]), n_boot=200)
    assert full["mean_corr"] == pytest.approx(0.4) and full["n_undefined"] == 0
    assert full["ci_low"] <= full["mean_corr"] <= full["ci_high"]
    # Dropping the worst example would give 0.5; the summary gives no mean at all.
    lost = summarize_correlations(np.array([np.nan, 0.4, 0.6]), n_boot=200)
    assert np.isnan(lost["mean_corr"]) and (lost["n_examples"], lost["n_undefined"]) == (3, 1)


def test_api_evaluate_gives_no_mean_over_fewer_examples():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 3)
    ).eval()
    images, labels = torch.randn(6, 1, 6, 6), torch.randint(0, 3, (6,))
    attributions = coar.attribute(
        model, images, labels, components="conv_filters", n_masks=200, progress=False
    )
    settings = dict(components="conv_filters", n_masks=50, alpha=0.3, progress=False)
    assert coar.evaluate(attributions, model, images, labels, **settings).n_undefined == 0
    weight = attributions.weight.copy()
    weight[:, 1] = 0.0  # example 1: a constant prediction
    zeroed = _with_columns(attributions, weight=weight)
    result = coar.evaluate(zeroed, model, images, labels, **settings)
    assert result.n_undefined == 1 and np.isnan(result.correlations[1])
    assert np.isnan([result.mean, result.ci_low, result.ci_high]).all()  # old: a real number
    assert result.summary()["n_undefined"].item() == 1
    assert "1 of 6 examples without a correlation" in str(result)
    weight[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"predictions hold NaN or inf for 1 of 6 examples.*\[2\]"):
        coar.evaluate(_with_columns(attributions, weight=weight), model, images, labels, **settings)


# --- coar.evaluation: NaN or inf inputs are failures ------------------------------------


def test_nan_in_attributions_stops_the_evaluation_naming_file_and_examples(tmp_path):
    exact, paths, _ = _linear_setup(tmp_path)
    weight = exact.weight.copy()
    weight[3, 2] = np.nan
    weight[0, 5] = np.inf
    broken = _with_columns(exact, weight=weight)
    # Old code: examples 2 and 5 got NaN correlations, silently left out of the mean.
    with pytest.raises(
        ValueError, match=r"method 'coar'.*for 2 of 8 examples \(examples \[2, 5\]\)"
    ):
        evaluate_methods({"coar": broken}, paths, n_boot=200)
    source = "results/attributions/setup/coar.pt"
    with pytest.raises(
        ValueError, match=rf"^{source}: the predictions on .*true_outputs_alpha0\.1\.npz hold"
    ):
        evaluate_methods({"coar": broken}, paths, n_boot=200, sources={"coar": source})
    bias = exact.bias.copy()
    bias[7] = np.nan
    with pytest.raises(ValueError, match=r"examples \[7\]"):
        evaluate_methods({"coar": _with_columns(exact, bias=bias)}, paths, n_boot=200)


def test_nan_in_the_true_outputs_stops_the_evaluation_naming_the_file(tmp_path):
    exact, paths, _ = _linear_setup(tmp_path)
    with np.load(paths[0]) as data:
        outputs = data["outputs"].copy()
        outputs[10, 4] = np.nan
        np.savez(paths[0], alpha=data["alpha"], masks=data["masks"], outputs=outputs)
    with pytest.raises(
        ValueError, match=r"true_outputs_alpha0\.1\.npz: the true outputs hold NaN.*\[4\]"
    ):
        evaluate_methods({"coar": exact}, paths, n_boot=200)


# --- coar_replication.published: the same rule ------------------------------------------


def test_published_comparison_counts_their_nans_and_gives_no_mean_over_the_rest(tmp_path):
    exact, paths, rng = _linear_setup(tmp_path, alphas=(0.1, 0.05))
    ours = _with_columns(exact, weight=exact.weight + 0.3 * rng.standard_normal(exact.weight.shape))
    weight = exact.weight.copy()
    weight[:, 6] = np.nan  # the authors' file holds NaNs for example 6, counted on conversion
    theirs = _with_columns(exact, weight=weight, n_nan=weight.shape[0], nan_examples=[6])
    summary, per_example = compare_published(ours, theirs, paths, n_boot=200)
    rows = summary.set_index("method")
    published, agreement = rows.loc["published"], rows.loc["agreement"]
    # Old code: the published mean over the 7 others (exactly 1.0 here), next to ours over 8.
    assert published.mean_corr.isna().all() and published.ci_low.isna().all()
    assert list(summary.columns) == [
        "method",
        "alpha_test",
        "mean_corr",
        "ci_low",
        "ci_high",
        "n_undefined",
        "n_examples",
    ]
    assert (published.n_undefined == 1).all() and (published.n_examples == 8).all()
    assert (agreement.n_undefined, agreement.n_examples) == (1, 8)
    assert np.isnan(agreement.mean_corr) and np.isnan(agreement.ci_low)
    assert rows.loc["coar"].mean_corr.notna().all() and (rows.loc["coar"].n_undefined == 0).all()
    assert per_example["agreement"].isna().tolist() == [j == 6 for j in range(8)]
    assert per_example["published_alpha0.1"].isna().sum() == 1


def test_published_nans_that_the_conversion_did_not_count_are_a_failure(tmp_path):
    exact, paths, _ = _linear_setup(tmp_path)
    weight = exact.weight.copy()
    weight[2, 3] = np.nan
    theirs = _with_columns(exact, weight=weight, n_nan=0, nan_examples=[])
    with pytest.raises(ValueError, match=r"the published attributions: .*examples \[3\]"):
        compare_published(exact, theirs, paths, n_boot=200)
    ours = _with_columns(exact, weight=weight)
    with pytest.raises(ValueError, match=r"our attributions: .*examples \[3\]"):
        compare_published(ours, exact, paths, n_boot=200)


# --- coar_replication.edit_experiments: NaN logits are failures, not predictions ---------


def _digit_like(tiny_resnet):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 1, 8, 8, generator=generator)
    with torch.no_grad():
        y = tiny_resnet(x).argmax(1)
    return x, y


def test_an_example_with_nan_logits_stops_the_edit_summary(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    x, y = _digit_like(tiny_resnet)
    labels = y[:40].numpy()
    target = int(np.bincount(labels).argmax())
    weight = np.random.default_rng(0).normal(size=(len(spec), 40))
    attributions = Attributions(weight, np.zeros(40), spec.names(), list(range(40)))
    x = x.clone()
    x[60 + 7] = np.nan  # test example 7: the model's logits are NaN
    settings = dict(target_class=target, k_max=10, k_step=5, max_target_accuracy=0.2)
    # Old code: argmax of NaN logits is class 0, so the example counted right or wrong.
    with pytest.raises(ValueError, match=r"split 'test': .*1 of 60 examples.*k = \[0, 5, 10\]"):
        forget_class(
            "s",
            tiny_resnet,
            spec,
            attributions,
            labels,
            Split(x[:60], y[:60]),
            Split(x[60:], y[60:]),
            **settings,
        )


def test_paired_correlation_with_nan_margins_is_an_error(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    x, y = _digit_like(tiny_resnet)
    keep = np.ones(len(spec), dtype=bool)
    clean, triggered = Split(x[:20], y[:20]), Split(x[20:40].clone(), y[20:40])
    assert -1 <= paired_output_correlation(tiny_resnet, spec, keep, clean, triggered) <= 1
    triggered.inputs[4] = np.inf
    # Old code: NaN, written to summary.json as the paired output correlation.
    with pytest.raises(ValueError, match=r"triggered copies of the pairs.*examples \[4\]"):
        paired_output_correlation(tiny_resnet, spec, keep, clean, triggered)


# --- coar_workflow.summary: undefined means are shown as such, never ranked -------------


def test_summary_marks_undefined_means_and_does_not_rank_them(tmp_path):
    root = tmp_path / "results"
    (root / "eval" / "digits").mkdir(parents=True)
    pd.DataFrame(
        [
            ("coar", 0.15, 0.80, 0.79, 0.81, 100, 0),
            ("coar", 0.1, 0.85, 0.84, 0.86, 100, 0),
            ("loo", 0.15, 0.60, 0.59, 0.61, 100, 0),
            ("loo", 0.1, 0.65, 0.64, 0.66, 100, 0),
            # ii: undefined at 0.1 (12 constant predictions); its 0.15 alone looks best
            ("ii", 0.15, 0.70, 0.69, 0.71, 100, 0),
            ("ii", 0.1, np.nan, np.nan, np.nan, 100, 12),
        ],
        columns=SUMMARY,
    ).to_csv(root / "eval" / "digits" / "summary.csv", index=False)
    text = summary_mod.render_summary(root)
    assert "| II | 0.700 [0.690, 0.710] | n/a [n/a, n/a] (12 of 100 undefined) |" in text
    # Old code: "best baseline II 0.700" (its mean over the one alpha_test it has).
    assert "best baseline LOO 0.600-0.650; n/a: II (alpha_test 0.1-0.15)" in text
    assert "never taken over fewer examples" in text
