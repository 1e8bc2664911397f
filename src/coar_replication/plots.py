"""Paper figures, and `save_figure`, which writes every figure of the replication.

Importing this module selects matplotlib's non-interactive Agg backend: the one place
that does (every module that draws figures imports `save_figure` from here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coar.atomic import atomic_path  # noqa: E402
from coar.evaluation import per_example_correlation  # noqa: E402


def save_figure(fig, path, *, tight_layout: bool = False, **savefig) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix, unless ``savefig``
    names one) and close it; ``tight_layout`` first if asked. The file holds no date,
    so the same figure gives the same bytes."""
    if tight_layout:
        fig.tight_layout()
    fmt = savefig.get("format") or Path(path).suffix.lstrip(".").lower()
    undated = {"pdf": {"CreationDate": None}, "ps": {"CreationDate": None}}
    undated["eps"], undated["svg"] = undated["ps"], {"Date": None}
    savefig.setdefault("metadata", undated.get(fmt))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig)
    plt.close(fig)


METHOD_LABELS = {
    "coar": "Coar",
    "loo": "LOO",
    "gp": "GP",
    "nc": "NC",
    "ii": "II",
    "atp": "AtP",
}


@dataclass
class EvaluationPanel:
    setup: str
    summary: pd.DataFrame  # method, alpha_test, mean_corr, ci_low, ci_high
    example_id: int
    alpha_test: float
    true: np.ndarray  # (K,) true outputs of the scatter example
    pred: np.ndarray  # (K,) Coar's predictions


def figure_evaluating_coar(panels: list[EvaluationPanel], path) -> None:
    """Fig. 1: per setup, a true-vs-predicted scatter and bars of mean correlation."""
    fig, axes = plt.subplots(len(panels), 2, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for (ax_scatter, ax_bars), panel in zip(axes, panels, strict=True):
        corr = per_example_correlation(panel.true[:, None], panel.pred[:, None])[0]
        ax_scatter.scatter(panel.pred, panel.true, s=12, alpha=0.7)
        lims = [min(panel.true.min(), panel.pred.min()), max(panel.true.max(), panel.pred.max())]
        ax_scatter.plot(lims, lims, color="grey", lw=1, ls="--")
        ax_scatter.set_xlabel("predicted margin (Coar)")
        ax_scatter.set_ylabel("true margin (ablated model)")
        ax_scatter.set_title(
            f"{panel.setup}: example {panel.example_id}, "
            f"$\\alpha$={panel.alpha_test:g}, r={corr:.2f}"
        )
        _correlation_bars(ax_bars, panel.summary)
        ax_bars.set_title(f"{panel.setup}: attribution accuracy")
    save_figure(fig, path, tight_layout=True)


def _correlation_bars(ax, summary: pd.DataFrame) -> None:
    methods = [m for m in METHOD_LABELS if m in set(summary["method"])]
    alphas = sorted(summary["alpha_test"].unique(), reverse=True)
    width = 0.8 / len(methods)
    x = np.arange(len(alphas))
    for i, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("alpha_test").loc[alphas]
        err = [rows["mean_corr"] - rows["ci_low"], rows["ci_high"] - rows["mean_corr"]]
        positions = x + (i - (len(methods) - 1) / 2) * width
        ax.bar(
            positions, rows["mean_corr"], width, yerr=err, capsize=3, label=METHOD_LABELS[method]
        )
        # No mean where some example has no correlation (coar.evaluation): say so in place.
        for position, (_, row) in zip(positions, rows.iterrows(), strict=True):
            if not np.isfinite(row["mean_corr"]):
                undefined = f"\n{int(row['n_undefined'])} undef." if "n_undefined" in row else ""
                ax.text(
                    position,
                    0.02,
                    "n/a" + undefined,
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                    rotation=90,
                )
    ax.set_xticks(x, [f"{a:g}" for a in alphas])
    ax.set_xlim(-0.5, len(alphas) - 0.5)
    ax.set_xlabel(r"ablation fraction $\alpha_{test}$")
    ax.set_ylabel("mean correlation")
    lowest = summary["ci_low"].min()  # NaN-skipping; NaN if no method has a mean
    ax.set_ylim(min(0.0, float(lowest) - 0.05) if np.isfinite(lowest) else 0.0, 1.0)
    ax.axhline(0, color="black", lw=0.8)
    ax.legend(
        frameon=False, ncol=3, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2)
    )


def plot_sample_efficiency(tables: dict[str, pd.DataFrame], path) -> None:
    """One panel per setup: held-out correlation against m per solver."""
    fig, axes = plt.subplots(
        1, len(tables), figsize=(4.5 * len(tables), 3.6), squeeze=False, constrained_layout=True
    )
    for ax, (setup, table) in zip(axes[0], tables.items(), strict=True):
        m_full = table["m"].max()
        for solver, group in table.groupby("solver", sort=False):
            group = group.sort_values("m")
            ax.plot(group["m"], group["mean_corr"], marker="o", ms=3, label=solver)
            ax.fill_between(group["m"], group["ci_low"], group["ci_high"], alpha=0.2)
        target = table.query("solver == 'least_squares' and m == @m_full")["mean_corr"]
        if len(target):
            ax.axhline(
                float(target.iloc[0]), color="grey", ls="--", lw=0.8, label="least squares, all m"
            )
        ax.axvline(m_full / 4, color="grey", ls=":", lw=0.8, label="m / 4")
        ax.set_xscale("log")
        ticks = sorted(table["m"].unique())
        ax.set_xticks(ticks, [str(m) for m in ticks], rotation=45, fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("ablations m (log scale)")
        ax.set_ylabel(f"held-out correlation (alpha_test = {table['alpha_test'].iloc[0]:g})")
        ax.set_title(setup)
        ax.legend(fontsize=7)
    save_figure(fig, path, format="pdf")
