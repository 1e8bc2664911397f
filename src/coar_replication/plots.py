"""Paper figures, and `save_figure`, which writes every figure of the replication.

Importing this module selects matplotlib's non-interactive Agg backend: the one place
that does (every module that draws figures imports `save_figure` from here).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coar.atomic import atomic_path  # noqa: E402
from coar.evaluation import per_example_correlation  # noqa: E402


def save_figure(fig, path, *, tight_layout: bool = False, **savefig) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix, unless ``savefig``
    names one) and close it; ``tight_layout`` first if asked."""
    if tight_layout:
        fig.tight_layout()
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
        ax.bar(
            x + (i - (len(methods) - 1) / 2) * width,
            rows["mean_corr"],
            width,
            yerr=err,
            capsize=3,
            label=METHOD_LABELS[method],
        )
    ax.set_xticks(x, [f"{a:g}" for a in alphas])
    ax.set_xlabel(r"ablation fraction $\alpha_{test}$")
    ax.set_ylabel("mean correlation")
    ax.set_ylim(min(0.0, float(summary["ci_low"].min()) - 0.05), 1.0)
    ax.axhline(0, color="black", lw=0.8)
    ax.legend(
        frameon=False, ncol=3, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2)
    )
