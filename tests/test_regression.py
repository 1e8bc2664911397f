import numpy as np
import pytest

from coar.regression import GramStats, correlation_from_stats, least_squares


def synthetic(m=400, p=30, n=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((m, p)) > 0.2
    w = rng.standard_normal((p, n))
    y = x @ w + 0.5 * np.sin(3 * x[:, :n]) + 0.1 * rng.standard_normal((m, n)) + 2.0
    return x, y.astype(np.float32)


def lstsq_with_intercept(x, y):
    design = np.column_stack([np.ones(len(x)), x.astype(np.float64)])
    coef = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    return coef[1:], coef[0]


def stats_of(x, y, chunk=None):
    stats = GramStats.zeros(x.shape[1], y.shape[1])
    chunk = chunk or len(x)
    for i in range(0, len(x), chunk):
        stats.update(x[i : i + chunk], y[i : i + chunk])
    return stats


def test_gram_fit_equals_lstsq_with_intercept():
    x, y = synthetic()
    fit = least_squares(stats_of(x, y))
    weight, bias = lstsq_with_intercept(x, y)
    np.testing.assert_allclose(fit.weight, weight, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(fit.bias, bias, rtol=1e-7, atol=1e-8)


def test_streaming_equals_one_batch():
    x, y = synthetic()
    whole, streamed = stats_of(x, y), stats_of(x, y, chunk=37)
    np.testing.assert_array_equal(whole.xtx, streamed.xtx)  # 0/1 products are exact
    np.testing.assert_allclose(whole.xty, streamed.xty)
    assert whole.n == streamed.n == len(x)
    split = stats_of(x[:100], y[:100]) + stats_of(x[100:], y[100:])
    np.testing.assert_allclose(split.xty, whole.xty)


def test_fewer_rows_than_components_gives_minimum_norm_solution():
    x, y = synthetic(m=20, p=40)
    fit = least_squares(stats_of(x, y))
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-6)  # interpolates
    centred = x - x.mean(0)
    np.testing.assert_allclose(fit.weight, np.linalg.pinv(centred) @ (y - y.mean(0)), atol=1e-6)


def test_constant_column_does_not_break_the_fit():
    x, y = synthetic()
    x[:, 3] = True  # never ablated
    fit = least_squares(stats_of(x, y))
    weight, bias = lstsq_with_intercept(x, y)
    np.testing.assert_allclose(fit.predict(x), x @ weight + bias, atol=1e-6)


def test_correlation_from_stats_equals_direct_correlation():
    x, y = synthetic()
    fit = least_squares(stats_of(x[:300], y[:300]))
    val = stats_of(x[300:], y[300:])
    pred = fit.predict(x[300:])
    direct = [np.corrcoef(pred[:, j], y[300:, j])[0, 1] for j in range(y.shape[1])]
    np.testing.assert_allclose(correlation_from_stats(fit, val), direct, rtol=1e-8)


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        least_squares(GramStats.zeros(3, 2))
