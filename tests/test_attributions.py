import logging

import numpy as np
import pytest
import torch

from coar.attributions import Attributions, from_original_datamodels


def original_style_fit(alpha=0.1, m=2000, p=15, n=6, seed=0):
    """Fit as fast_l1 does (standardised masks, intercept) and return the raw-unit truth."""
    rng = np.random.default_rng(seed)
    x = (rng.random((m, p)) >= alpha).astype(np.float64)
    y = x @ rng.standard_normal((p, n)) + 0.1 * rng.standard_normal((m, n)) + 3.0
    mu, sigma = x.mean(0), x.std(0)  # population std, as fast_l1's calc_stats
    design = np.column_stack([np.ones(m), (x - mu) / sigma])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    raw = np.linalg.lstsq(np.column_stack([np.ones(m), x]), y, rcond=None)[0]
    return dict(
        x=x, mu=mu, sigma=sigma, weight_std=coef[1:], bias_std=coef[0], weight=raw[1:], bias=raw[0]
    )


def save_datamodels(path, weight, bias=None, lam=None, dtype=torch.float32):
    payload = {"weight": torch.tensor(weight, dtype=dtype)}
    if bias is not None:
        payload["bias"] = torch.tensor(bias, dtype=dtype)
    if lam is not None:
        payload["lam"] = torch.tensor(lam, dtype=dtype)
    torch.save(payload, path)


def test_exact_conversion_to_raw_units(tmp_path):
    fit = original_style_fit()
    save_datamodels(tmp_path / "datamodels.pt", fit["weight_std"], fit["bias_std"], np.zeros(6))
    attr = from_original_datamodels(
        tmp_path / "datamodels.pt", mask_mean=fit["mu"], mask_std=fit["sigma"]
    )
    np.testing.assert_allclose(attr.weight, fit["weight"], rtol=1e-5)
    np.testing.assert_allclose(attr.bias, fit["bias"], rtol=1e-5)
    np.testing.assert_allclose(
        attr.predict(fit["x"]), fit["x"] @ fit["weight"] + fit["bias"], rtol=1e-5
    )
    assert attr.meta["n_nan"] == 0 and attr.meta["nan_examples"] == []
    assert attr.meta["has_bias"] and attr.meta["units"].startswith("exact")


def test_float16_with_nans_are_counted_logged_and_kept(tmp_path, caplog):
    fit = original_style_fit(alpha=0.05)
    weight = fit["weight_std"].copy()
    weight[2, 1] = np.nan
    weight[[0, 4], 4] = np.nan
    save_datamodels(tmp_path / "datamodels.pt", weight, fit["bias_std"], dtype=torch.float16)
    names = [f"layer[{i}]" for i in range(15)]
    ids = [100 + j for j in range(6)]
    with caplog.at_level(logging.WARNING, logger="coar.attributions"):
        attr = from_original_datamodels(tmp_path / "datamodels.pt", names, ids, alpha=0.05)
    assert attr.meta["n_nan"] == 3
    assert attr.meta["nan_examples"] == [101, 104]
    assert attr.meta["source_dtype"] == "float16"
    assert "3 NaN entries" in caplog.text and "[101, 104]" in caplog.text
    assert np.isnan(attr.weight[2, 1]) and np.isnan(attr.bias[[1, 4]]).all()
    finite = [0, 2, 3, 5]
    # Bernoulli mu/sigma instead of the masks' own: close, not exact (fp16 + sampling error)
    np.testing.assert_allclose(
        attr.weight[:, finite], fit["weight"][:, finite], rtol=0.1, atol=0.05
    )
    corr = np.corrcoef(attr.weight[:, finite].ravel(), fit["weight"][:, finite].ravel())[0, 1]
    assert corr > 0.99
    assert attr.component_names == names and attr.example_ids == ids
    attr.save(tmp_path / "ours.pt")
    back = Attributions.load(tmp_path / "ours.pt")
    assert np.isnan(back.weight).sum() == 3 and back.meta["n_nan"] == 3


def test_missing_bias_keeps_correlations(tmp_path):
    fit = original_style_fit()
    save_datamodels(tmp_path / "w.pt", fit["weight_std"])
    attr = from_original_datamodels(tmp_path / "w.pt", mask_mean=fit["mu"], mask_std=fit["sigma"])
    assert not attr.meta["has_bias"]
    pred, true = attr.predict(fit["x"]), fit["x"] @ fit["weight"] + fit["bias"]
    np.testing.assert_allclose(pred - pred.mean(0), true - true.mean(0), atol=1e-6)


def test_bad_inputs_are_named(tmp_path):
    fit = original_style_fit()
    save_datamodels(tmp_path / "d.pt", fit["weight_std"], fit["bias_std"])
    with pytest.raises(ValueError, match="mask_mean=, mask_std=.*alpha="):
        from_original_datamodels(tmp_path / "d.pt")
    with pytest.raises(ValueError, match="looks transposed"):
        from_original_datamodels(tmp_path / "d.pt", [f"c{i}" for i in range(6)], alpha=0.1)
    with pytest.raises(ValueError, match="6 columns, but 4 example ids"):
        from_original_datamodels(tmp_path / "d.pt", example_ids=[0, 1, 2, 3], alpha=0.1)
    torch.save({"w": torch.zeros(3, 2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: expected a dict with key 'weight'"):
        from_original_datamodels(tmp_path / "other.pt", alpha=0.1)
