"""Cost awareness: warnings with the remedy before any ablation (fewer masks than
components; a fit that does not fit the device's memory), the projected fit cost, the
first batch's projection of the ablation time, and progress bars with throughput for
ablation (attribute and evaluate) and fitting."""

import logging
import re

import pytest
import torch
from torch import nn

import coar
import coar.api
import coar.cost
from coar.cost import fit_cost


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 5 * 5, 4)
    ).eval()


def examples(n=10):
    return torch.randn(n, 1, 5, 5, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 4


class Ablated(Exception):
    """Raised instead of ablating: what was logged before had come before any ablation."""


@pytest.fixture
def no_ablation(monkeypatch):
    def refuse(*args, **kwargs):
        raise Ablated

    monkeypatch.setattr(coar.api, "ablate_rows", refuse)


def test_fewer_masks_than_components_warns_before_ablating(caplog, no_ablation):
    model, (images, labels) = tiny_model(), examples()
    with caplog.at_level(logging.INFO, logger="coar"), pytest.raises(Ablated):
        coar.attribute(model, images, labels, components="conv_filters", n_masks=5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "5 masks for 6 components: least squares falls back to the minimum-norm" in warnings[0]
    assert "e.g. 18" in warnings[0] and "solver='ridge'" in warnings[0]
    assert "projected least_squares fit of 6 components x 10 examples" in caplog.text


def test_ridge_and_evaluation_runs_do_not_warn_about_minimum_norm(caplog, no_ablation):
    model, (images, labels) = tiny_model(), examples()
    with pytest.raises(Ablated):
        coar.attribute(model, images, labels, components="conv_filters", n_masks=5, solver="ridge")
    attributions = coar.Attributions(
        torch.zeros(6, 10).numpy(),
        torch.zeros(10).numpy(),
        [str(i) for i in range(6)],
        list(range(10)),
    )
    with pytest.raises(Ablated):
        coar.evaluate(attributions, model, images, labels, components="conv_filters", n_masks=3)
    assert "minimum-norm" not in caplog.text


def test_a_fit_larger_than_the_devices_memory_warns_before_ablating(
    caplog, monkeypatch, no_ablation
):
    model, (images, labels) = tiny_model(), examples()
    monkeypatch.setattr(coar.cost, "device_memory", lambda device: 1_000)
    with pytest.raises(Ablated):
        coar.attribute(model, images, labels, components="conv_filters", n_masks=60)
    assert "exceeds the device's memory: fit fewer components" in caplog.text
    assert "4 KB of 1 KB on cpu" in caplog.text


def test_fit_cost_grows_with_the_components():
    small, large = fit_cost(500, 2000, 10), fit_cost(2000, 8000, 10)
    # Train and validation Gram matrices, the Cholesky factor, X^T Y-sized matrices.
    assert small.bytes == 8 * (3 * 500 * 500 + 6 * 500 * 10)
    assert large.bytes > 15 * small.bytes and large.seconds > 30 * small.seconds
    singular = fit_cost(500, 300, 10)  # the minimum-norm fallback adds an eigendecomposition
    assert singular.bytes > small.bytes and singular.seconds > fit_cost(500, 600, 10).seconds
    assert fit_cost(500, 2000, 10, "ridge").bytes == 8 * (5 * 500 * 500 + 6 * 500 * 10)
    assert coar.cost.device_memory("cpu") > 2**28


def test_progress_bars_show_throughput_and_projections(capfd, caplog):
    model, (images, labels) = tiny_model(), examples()
    settings = dict(components="conv_filters", masks_per_batch=10)
    with caplog.at_level(logging.INFO, logger="coar"):
        attributions = coar.attribute(model, images, labels, n_masks=60, **settings)
    bars = capfd.readouterr().err
    assert "examples/s, under a second projected in all" in bars  # from the first batch
    assert "fit: reading" in bars and "row/s" in bars
    assert "fit: solving least_squares for 6 components" in bars and "second projected" in bars
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="coar"):  # the log says the same without bars
        coar.attribute(model, images, labels, n_masks=60, progress=False, **settings)
    first = re.search(r"first 10 of 60 masks in [\d.]+ s \((\d+) examples/s\)", caplog.text)
    assert first and int(first.group(1)) > 0 and "projected for all" in caplog.text
    assert capfd.readouterr().err == ""
    coar.evaluate(attributions, model, images, labels, n_masks=20, **settings)
    assert "ablate evaluation" in capfd.readouterr().err
