import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, Ridge

from coar.attributions import Attributions
from coar.fit import fit_from_beton, fit_stats
from coar.regression import (
    GramStats,
    RidgeBasis,
    correlation_from_stats,
    lasso,
    lasso_grid,
    lasso_path,
    least_squares,
    mse_from_stats,
    ridge,
    ridge_path,
)
from coar.store import gather_to_beton, run_id, write_shard


def synthetic(m=400, p=30, n=5, seed=0, keep=0.8):
    """Coar-like data: 0/1 keep-masks, a linear part, a nonlinear part and noise."""
    rng = np.random.default_rng(seed)
    x = rng.random((m, p)) < keep
    w = rng.standard_normal((p, n))
    y = x @ w + 0.5 * np.sin(3 * x[:, :n]) + 0.1 * rng.standard_normal((m, n)) + 2.0
    return x, y.astype(np.float32)


def lstsq_with_intercept(x, y):
    design = np.column_stack([np.ones(len(x)), x.astype(np.float64)])
    coef = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    return coef[1:], coef[0]


def stats_of(x, y, chunk=None, **kwargs):
    stats = GramStats.zeros(x.shape[1], y.shape[1], **kwargs)
    chunk = chunk or len(x)
    for i in range(0, len(x), chunk):
        stats.update(x[i : i + chunk], y[i : i + chunk])
    return stats


def assert_close_relative(actual, desired, rtol):
    """Relative to the largest entry: entries near zero must not dominate the check."""
    scale = np.abs(desired).max()
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale)


def test_gram_fit_equals_lstsq_with_intercept():
    x, y = synthetic()
    fit = least_squares(stats_of(x, y))
    weight, bias = lstsq_with_intercept(x, y)
    assert fit.info["method"] == "cholesky"
    np.testing.assert_allclose(fit.weight, weight, rtol=1e-5)
    np.testing.assert_allclose(fit.bias, bias, rtol=1e-5)


def test_float32_statistics_are_exact_counts_and_fit_closely():
    x, y = synthetic(m=2000, p=40, keep=0.95)
    exact, single = stats_of(x, y, chunk=300), stats_of(x, y, chunk=300, dtype=torch.float32)
    np.testing.assert_array_equal(single.xtx.double().numpy(), exact.xtx.numpy())
    weight, _ = lstsq_with_intercept(x, y)
    assert_close_relative(least_squares(single).weight, weight, 1e-3)


def test_streaming_equals_one_batch():
    x, y = synthetic()
    whole, streamed = stats_of(x, y), stats_of(x, y, chunk=37)
    np.testing.assert_array_equal(whole.xtx, streamed.xtx)  # 0/1 products are exact
    np.testing.assert_allclose(whole.xty, streamed.xty)
    assert whole.n == streamed.n == len(x)
    split = stats_of(x[:100], y[:100]) + stats_of(x[100:], y[100:])
    np.testing.assert_allclose(split.xty, whole.xty)
    in_place = stats_of(x[:100], y[:100]).add_(stats_of(x[100:], y[100:]))
    np.testing.assert_allclose(in_place.xtx, whole.xtx)
    assert in_place.n == len(x)


def test_mismatched_batch_is_refused():
    stats = GramStats.zeros(4, 2)
    with pytest.raises(ValueError, match="does not match"):
        stats.update(np.ones((3, 5), bool), np.zeros((3, 2)))


def test_fewer_rows_than_components_gives_minimum_norm_solution():
    x, y = synthetic(m=20, p=40)
    fit = least_squares(stats_of(x, y))
    assert fit.info["method"] == "minimum_norm"
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-5)  # interpolates
    centred = x - x.mean(0)
    np.testing.assert_allclose(fit.weight, np.linalg.pinv(centred) @ (y - y.mean(0)), atol=1e-6)
    weight, bias = lstsq_with_intercept(x, y)  # lstsq's minimum norm includes the intercept
    np.testing.assert_allclose(fit.predict(x), x @ weight + bias, atol=1e-5)


def test_constant_column_does_not_break_the_fit():
    x, y = synthetic()
    x[:, 3] = True  # never ablated
    fit = least_squares(stats_of(x, y))
    weight, bias = lstsq_with_intercept(x, y)
    np.testing.assert_allclose(fit.predict(x), x @ weight + bias, atol=1e-6)


def test_correlation_and_mse_from_stats_equal_direct_computation():
    x, y = synthetic()
    fit = least_squares(stats_of(x[:300], y[:300]))
    val = stats_of(x[300:], y[300:])
    pred = fit.predict(x[300:])
    direct = [np.corrcoef(pred[:, j], y[300:, j])[0, 1] for j in range(y.shape[1])]
    np.testing.assert_allclose(correlation_from_stats(fit, val), direct, rtol=1e-8)
    mse = mse_from_stats(torch.from_numpy(fit.weight), torch.from_numpy(fit.bias), val)
    np.testing.assert_allclose(mse.numpy(), ((pred - y[300:]) ** 2).mean(0), rtol=1e-8)


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        least_squares(GramStats.zeros(3, 2))


def test_ridge_equals_sklearn_with_per_target_lambda():
    x, y = synthetic(m=200, p=30, n=3)
    lam = np.array([1e-3, 1e-2, 0.3])
    fit = ridge(stats_of(x, y), lam)
    for j in range(3):
        # sklearn's Ridge minimises |y - b - Xw|^2 + alpha |w|^2: alpha = n lam.
        ref = Ridge(alpha=len(x) * lam[j], solver="cholesky").fit(x.astype(float), y[:, j])
        np.testing.assert_allclose(fit.weight[:, j], ref.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fit.bias[j], ref.intercept_, rtol=1e-6)
    np.testing.assert_array_equal(fit.lam, lam)


@pytest.mark.parametrize("in_eigenbasis", [False, True])
def test_ridge_path_validation_mse_matches_direct_fits(in_eigenbasis):
    x, y = synthetic(m=300, p=30, n=3)
    train, val = stats_of(x[:200], y[:200]), stats_of(x[200:], y[200:])
    grid = np.array([1.0, 0.1, 0.01])
    mses = ridge_path(RidgeBasis.of(train), val, grid, in_eigenbasis=in_eigenbasis)
    for k, lam in enumerate(grid):
        pred = ridge(stats_of(x[:200], y[:200]), lam).predict(x[200:])
        np.testing.assert_allclose(mses[k], ((pred - y[200:]) ** 2).mean(0), rtol=1e-8)


@pytest.mark.parametrize("m,p", [(300, 20), (40, 60)])
def test_lasso_equals_sklearn_at_the_same_lambda(m, p):
    x, y = synthetic(m=m, p=p, n=3, seed=1)
    stats = stats_of(x, y)
    # per target, a lambda that leaves some coefficients at zero and some not
    lam = lasso_grid(stats, 3, 0.1)[1]
    fit = lasso(stats, lam, tol=1e-12, max_iter=200_000)
    for j in range(3):
        # sklearn's Lasso minimises 1/(2n) |y - b - Xw|^2 + alpha |w|_1: alpha = lam.
        ref = Lasso(alpha=lam[j], tol=1e-14, max_iter=1_000_000).fit(x.astype(float), y[:, j])
        assert 0 < np.count_nonzero(ref.coef_) < p
        assert_close_relative(fit.weight[:, j], ref.coef_, 1e-4)
        np.testing.assert_allclose(fit.bias[j], ref.intercept_, rtol=1e-4)


def test_lasso_path_picks_lambda_by_validation_mse_and_refits():
    x, y = synthetic(m=400, p=30, n=4, seed=2)
    train, val = stats_of(x[:300], y[:300]), stats_of(x[300:], y[300:])
    grid = lasso_grid(train, 8, 1e-3)
    path = lasso_path(train, val, grid, tol=1e-10, max_iter=50_000, patience=8)
    for k in range(len(grid)):
        if np.isnan(path["mse"][k]).any():
            continue
        direct = lasso(stats_of(x[:300], y[:300]), grid[k], tol=1e-10, max_iter=50_000)
        pred = direct.predict(x[300:])
        np.testing.assert_allclose(path["mse"][k], ((pred - y[300:]) ** 2).mean(0), rtol=1e-6)
    best = np.nanargmin(path["mse"], axis=0)
    np.testing.assert_allclose(path["lam"].numpy(), grid[best, np.arange(4)])

    final, diagnostics = fit_stats(
        stats_of(x[:300], y[:300]),
        stats_of(x[300:], y[300:]),
        {
            "solver": "lasso",
            "lambda_grid": {"n": 8, "min_ratio": 1e-3},
            "tol": 1e-10,
            "max_iter": 50_000,
            "patience": 8,
        },
    )
    np.testing.assert_allclose(final.lam, path["lam"].numpy())
    for j in range(4):
        ref = Lasso(alpha=final.lam[j], tol=1e-14, max_iter=1_000_000).fit(x.astype(float), y[:, j])
        assert_close_relative(final.weight[:, j], ref.coef_, 1e-4)
    assert np.isfinite(diagnostics["val_corr"]).all()


@pytest.mark.parametrize("solver", ["least_squares", "ridge", "lasso"])
def test_fit_stats_refits_on_all_rows(solver):
    x, y = synthetic(m=300, p=20, n=3)
    final, diagnostics = fit_stats(
        stats_of(x[:250], y[:250]), stats_of(x[250:], y[250:]), {"solver": solver}
    )
    assert diagnostics["val_corr"].shape == (3,) and (diagnostics["val_corr"] > 0.9).all()
    if solver == "least_squares":
        np.testing.assert_allclose(final.weight, lstsq_with_intercept(x, y)[0], rtol=1e-6)
    elif solver == "ridge":
        np.testing.assert_allclose(final.weight, ridge(stats_of(x, y), final.lam).weight)
    assert final.lam.shape == (3,)


def test_regularised_solvers_need_validation_rows():
    x, y = synthetic()
    with pytest.raises(ValueError, match="val_fraction > 0"):
        fit_stats(stats_of(x, y), None, {"solver": "ridge"})
    with pytest.raises(ValueError, match="choose one of"):
        fit_stats(stats_of(x, y), None, {"solver": "sgd"})


def test_fit_from_beton_in_target_chunks_equals_one_pass(tmp_path):
    x, y = synthetic(m=300, p=12, n=7)
    run = run_id(0, "train", 0.2, 300)
    write_shard(tmp_path / "shard_0.npz", np.arange(300), x, y, run)
    beton = tmp_path / "data.beton"
    gather_to_beton([tmp_path / "shard_0.npz"], run, beton)
    config = {"solver": "least_squares", "val_fraction": 0.2, "seed": 0}
    names, ids = [f"c{i}" for i in range(12)], list(range(7))
    whole = fit_from_beton(
        beton, component_names=names, example_ids=ids, fit_config=config, meta={}
    )
    chunked = fit_from_beton(
        beton,
        component_names=names,
        example_ids=ids,
        fit_config={**config, "target_chunk": 4},
        meta={},
        batch_size=64,
    )
    np.testing.assert_allclose(whole.weight, lstsq_with_intercept(x, y)[0], rtol=1e-5)
    np.testing.assert_allclose(chunked.weight, whole.weight, rtol=1e-10)
    np.testing.assert_allclose(chunked.meta["val_corr"], whole.meta["val_corr"], rtol=1e-10)
    assert chunked.meta["n_val_rows"] == whole.meta["n_val_rows"] > 0

    lasso_config = {**config, "solver": "lasso"}
    attr = fit_from_beton(
        beton,
        component_names=names,
        example_ids=ids,
        fit_config=lasso_config,
        meta={"setup": "synthetic"},
    )
    attr.save(tmp_path / "coar.pt")
    back = Attributions.load(tmp_path / "coar.pt")
    assert back.meta["solver"] == "lasso" and back.meta["setup"] == "synthetic"
    assert back.meta["fit_config"]["solver"] == "lasso" and back.meta["device"] == "cpu"
    assert back.lam.shape == (7,) and (back.lam > 0).all()
    assert len(back.meta["lambda_grid_ratios"]) == 20 and len(back.meta["val_corr"]) == 7


SINGLE_PRECISION = [
    pytest.param("cpu", id="cpu-float32"),
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


@pytest.mark.parametrize("device", SINGLE_PRECISION)
@pytest.mark.parametrize("solver", ["least_squares", "ridge", "lasso"])
def test_single_precision_fit_equals_double_precision_fit(solver, device):
    """The CUDA path (float32 statistics) against the CPU path (float64)."""
    x, y = synthetic(m=3000, p=50, n=8, keep=0.95)

    def split(**kwargs):
        return stats_of(x[:2500], y[:2500], **kwargs), stats_of(x[2500:], y[2500:], **kwargs)

    single = dict(device=device, dtype=torch.float32)
    double, double_diagnostics = fit_stats(*split(), {"solver": solver})
    fit, diagnostics = fit_stats(*split(**single), {"solver": solver})
    np.testing.assert_allclose(diagnostics["val_corr"], double_diagnostics["val_corr"], atol=1e-3)
    if solver == "least_squares":
        assert_close_relative(fit.weight, double.weight, 1e-3)
    else:  # lambda picks may differ by a grid step; compare at the same lambdas
        solve = ridge if solver == "ridge" else lasso
        same = solve(stats_of(x, y, **single), double.lam)
        assert_close_relative(same.weight, double.weight, 1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gram_counts_are_exact_and_xty_keeps_float32_precision():
    x, y = synthetic(m=5000, p=300, n=4, keep=0.95)
    exact, gpu = stats_of(x, y, chunk=1000), stats_of(x, y, chunk=1000, device="cuda")
    np.testing.assert_array_equal(gpu.xtx.cpu().double().numpy(), exact.xtx.numpy())
    np.testing.assert_allclose(gpu.xty.cpu().double().numpy(), exact.xty.numpy(), rtol=1e-5)
    assert torch.get_float32_matmul_precision() == "highest"  # restored after the update


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_validation_stats_parked_in_host_memory_give_the_same_numbers():
    x, y = synthetic(m=3000, p=50, n=8, keep=0.95)
    train = stats_of(x[:2500], y[:2500], device="cuda")
    val = stats_of(x[2500:], y[2500:], device="cuda")
    fit = least_squares(train)
    np.testing.assert_allclose(
        correlation_from_stats(fit, val.to("cpu"), device="cuda"),
        correlation_from_stats(fit, val),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        train.add_(val.to("cpu")).xtx.cpu().numpy(), stats_of(x, y).xtx.numpy()
    )
