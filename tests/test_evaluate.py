import numpy as np
import pytest

from coar.attributions import Attributions
from coar.evaluation import (
    bootstrap_mean_ci,
    check_fresh_masks,
    evaluate_methods,
    fresh_mask_rows,
    mask_keys,
    per_example_correlation,
    stream_mask_keys,
    training_mask_keys,
)
from coar.masks import sample_masks
from coar.store import run_id, write_shard


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
    assert list(summary.columns) == [
        "method",
        "alpha_test",
        "mean_corr",
        "ci_low",
        "ci_high",
        "n_examples",
        "n_undefined",
    ]
    assert (summary.n_examples == n).all() and (summary.n_undefined == 0).all()
    coar = summary[summary.method == "coar"]
    np.testing.assert_allclose(coar.mean_corr, 1.0)
    assert (summary[summary.method == "gp"].mean_corr < 0.9).all()
    assert len(per_example) == 2 * 2 * n


def test_fresh_rows_skip_training_masks_and_the_check_names_the_culprit(tmp_path):
    # 6 components: only 64 distinct masks, so the streams must collide somewhere
    run = run_id(seed=0, stream="train", alpha=0.3, n_rows=40)
    train = sample_masks(0, "train", range(40), 6, 0.3)
    assert stream_mask_keys(run, 6, chunk=7) == mask_keys(train)
    write_shard(tmp_path / "shard_0.npz", np.arange(40), train, np.zeros((40, 2)), run)
    keys = training_mask_keys([tmp_path / "shard_0.npz"])

    naive = sample_masks(1, "eval/0.3", range(30), 6, 0.3)
    with pytest.raises(ValueError, match=r"evaluation mask rows \[.*\] equal training masks"):
        check_fresh_masks(naive, keys, source="true_outputs_alpha0.3.npz")

    rows = fresh_mask_rows(1, "eval/0.3", 30, 6, 0.3, exclude=keys)
    assert len(rows) == 30 and rows.max() > 29  # some rows were skipped
    fresh = sample_masks(1, "eval/0.3", rows, 6, 0.3)
    check_fresh_masks(fresh, keys, source="fresh")  # does not raise
    # deterministic: the same rows every time
    np.testing.assert_array_equal(rows, fresh_mask_rows(1, "eval/0.3", 30, 6, 0.3, keys))


def test_fresh_rows_give_up_with_a_clear_error_when_no_fresh_mask_exists():
    everything = mask_keys(np.array([[a, b] for a in (0, 1) for b in (0, 1)], dtype=bool))
    with pytest.raises(ValueError, match="too few distinct masks"):
        fresh_mask_rows(0, "eval/0.5", 5, 2, 0.5, exclude=everything)


def test_attributions_that_do_not_fit_the_outputs_are_named(tmp_path):
    rng = np.random.default_rng(4)
    wrong = Attributions(rng.standard_normal((3, 5)), np.zeros(5), ["a", "b", "c"], list(range(5)))
    path = tmp_path / "true.npz"
    np.savez(path, alpha=0.1, masks=rng.random((10, 4)) > 0.1, outputs=rng.random((10, 5)))
    with pytest.raises(ValueError, match="method 'loo'.*4 components, 5 examples"):
        evaluate_methods({"loo": wrong}, [path])
