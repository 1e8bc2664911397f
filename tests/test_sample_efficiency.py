import numpy as np
import pandas as pd
import pytest

from coar.fit import validation_rows
from coar.regression import GramStats
from coar.store import gather_to_beton, run_id, write_shard
from coar_replication.sample_efficiency import (
    ablations_needed,
    least_squares_equivalent_m,
    m_grid,
    prefix_statistics,
)


def test_prefix_statistics_equal_statistics_of_the_first_m_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((120, 6)) > 0.2
    y = rng.standard_normal((120, 3)).astype(np.float32)
    run = run_id(0, "train", 0.2, 120)
    write_shard(tmp_path / "s.npz", np.arange(120), x, y, run)
    gather_to_beton([tmp_path / "s.npz"], run, tmp_path / "d.beton")
    snapshots = prefix_statistics(tmp_path / "d.beton", [30, 77, 120], 0.25, 0, batch_size=32)
    is_val = validation_rows(120, 0.25, 0)
    for m, (train, val) in snapshots.items():
        for stats, rows in ((train, ~is_val[:m]), (val, is_val[:m])):
            direct = GramStats.zeros(6, 3)
            direct.update(x[:m][rows], y[:m][rows])
            assert stats.n == direct.n
            np.testing.assert_array_equal(stats.xtx, direct.xtx)
            np.testing.assert_allclose(stats.xty, direct.xty, rtol=1e-12)
    with pytest.raises(ValueError, match="m must lie in 2..120"):
        prefix_statistics(tmp_path / "d.beton", [200], 0.25, 0)


def test_m_grid():
    assert m_grid([0.25, 1.0, 0.001], 5000) == [10, 1250, 5000]


def test_ablations_needed_reads_the_crossing():
    table = pd.DataFrame(
        dict(
            solver=["least_squares"] * 3 + ["lasso"] * 3 + ["ridge"] * 3,
            m=[100, 200, 400] * 3,
            mean_corr=[0.5, 0.6, 0.7, 0.6, 0.68, 0.74, 0.5, 0.55, 0.6],
        )
    )
    summary = ablations_needed(table).set_index("solver")
    assert summary.loc["lasso", "m_needed"] == 400
    # 0.70 lies a third of the way from 0.68 (m=200) to 0.74 (m=400): log-linear in m
    assert summary.loc["lasso", "m_crossing_interpolated"] == pytest.approx(200 * 2 ** (1 / 3))
    assert np.isnan(summary.loc["ridge", "m_needed"])
    assert summary.loc["lasso", "gap_near_quarter"] == pytest.approx(0.6 - 0.7)
    equivalent = least_squares_equivalent_m(table)
    np.testing.assert_allclose(equivalent[:3], [100, 200, 400])  # least squares itself
    assert equivalent[3] == pytest.approx(200)  # lasso's 0.6 at m=100 = least squares at 200
    assert np.isnan(equivalent[5])  # 0.74 is beyond least squares' curve
    assert equivalent[6] == pytest.approx(100)
