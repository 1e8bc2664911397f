import numpy as np
import pytest

from coar.attributions import Attributions
from coar.evaluate import bootstrap_mean_ci, evaluate_methods, per_example_correlation


def test_correlation_of_a_known_noisy_predictor():
    # true = pred + noise with var(noise) = var(pred): correlation is 1/sqrt(2)
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((20000, 4))
    true = pred + rng.standard_normal((20000, 4))
    np.testing.assert_allclose(per_example_correlation(true, pred), 1 / np.sqrt(2), atol=0.01)


def test_correlation_is_exact_for_affine_predictions():
    rng = np.random.default_rng(1)
    true = rng.standard_normal((100, 3))
    np.testing.assert_allclose(per_example_correlation(true, 2 * true + 1), 1.0)
    np.testing.assert_allclose(per_example_correlation(true, -true), -1.0)


def test_constant_outputs_give_nan_not_a_number_that_looks_real():
    true = np.column_stack([np.full(10, 0.3), np.arange(10.0)])
    corr = per_example_correlation(true, np.arange(20.0).reshape(10, 2))
    assert np.isnan(corr[0]) and corr[1] == pytest.approx(1.0)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(2)
    small, large = rng.normal(0.5, 0.2, 50), rng.normal(0.5, 0.2, 5000)
    mean, low, high = bootstrap_mean_ci(small, seed=0)
    assert low < mean < high and mean == pytest.approx(small.mean())
    _, low_l, high_l = bootstrap_mean_ci(large, seed=0)
    assert high_l - low_l < (high - low) / 5
    # the interval's width matches the standard error: 2 * 1.96 * 0.2 / sqrt(5000)
    assert high_l - low_l == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(5000), rel=0.15)


def test_bootstrap_ignores_nan_and_rejects_all_nan():
    assert bootstrap_mean_ci(np.array([np.nan, 1.0, 1.0]))[0] == 1.0
    with pytest.raises(ValueError, match="no finite"):
        bootstrap_mean_ci(np.array([np.nan]))


def test_evaluate_methods_on_a_known_linear_model(tmp_path):
    rng = np.random.default_rng(3)
    p, n, k = 12, 5, 100
    weight, bias = rng.standard_normal((p, n)), rng.standard_normal(n)
    exact = Attributions(weight, bias, [f"c{i}" for i in range(p)], list(range(n)))
    shuffled = Attributions(rng.permutation(weight), bias, exact.component_names, exact.example_ids)
    paths = []
    for alpha in (0.1, 0.2):
        masks = rng.random((k, p)) >= alpha
        path = tmp_path / f"true_{alpha}.npz"
        np.savez(path, alpha=alpha, masks=masks, outputs=exact.predict(masks))
        paths.append(path)
    summary, per_example = evaluate_methods({"coar": exact, "gp": shuffled}, paths, n_boot=200)
    assert list(summary.columns) == ["method", "alpha_test", "mean_corr", "ci_low", "ci_high"]
    coar = summary[summary.method == "coar"]
    np.testing.assert_allclose(coar.mean_corr, 1.0)
    assert (summary[summary.method == "gp"].mean_corr < 0.9).all()
    assert len(per_example) == 2 * 2 * n
