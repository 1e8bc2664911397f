"""Paper figures, and `save_figure`, which writes every figure of the replication.

Importing this module selects matplotlib's non-interactive Agg backend: the one place
that does (every module that draws figures imports `save_figure` from here).

Every figure reads on its own: a title that says what it shows, axes with units, the
terms it uses defined in a footnote (`add_footnote`), and legends outside the axes
(`legend_outside`), so that no legend covers data.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coar.atomic import atomic_path  # noqa: E402
from coar.evaluation import per_example_correlation  # noqa: E402

# Metadata that would make identical figures differ in bytes: the date (PDF, PostScript,
# SVG) and matplotlib's version (PNG's "Software"; the PDF's Producer names it too, but
# a version change is a code change anyway).
_UNDATED = {
    "pdf": {"CreationDate": None},
    "ps": {"CreationDate": None},
    "eps": {"CreationDate": None},
    "svg": {"Date": None},
    "png": {"Software": None},
}
PNG_DPI = 150


def save_figure(fig, paths, **savefig) -> None:
    """Write ``fig`` to ``paths`` (one path or several: the same figure as PDF and PNG,
    say) atomically, each in the format its suffix names unless ``savefig`` names one,
    and close it. The files hold no date and no software version, so the same figure
    gives the same bytes; legends and footnotes outside the axes are kept
    (``bbox_inches="tight"``). Figures lay themselves out (``layout="constrained"``)."""
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    try:
        for path in paths:
            fmt = savefig.get("format") or Path(path).suffix.lstrip(".").lower()
            options = {"bbox_inches": "tight", "pad_inches": 0.1, **savefig}
            options.setdefault("metadata", _UNDATED.get(fmt))
            if fmt == "png":
                options.setdefault("dpi", PNG_DPI)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, **options)
    finally:
        plt.close(fig)


def legend_outside(ax, **legend) -> None:
    """The legend of ``ax`` to the right of it, framed, where it covers no data."""
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize="small", **legend
    )


def add_footnote(fig, text: str, width: int | None = None) -> None:
    """A footnote under the axes of ``fig``: the definitions its terms need. Wrapped to
    the figure's width; `save_figure` keeps it in the file."""
    width = width or max(60, int(fig.get_figwidth() * 14))
    wrapped = "\n".join(textwrap.fill(p, width) for p in text.split("\n"))
    fig.text(0.0, 0.0, wrapped, ha="left", va="top", fontsize="small", wrap=False)


METHOD_LABELS = {
    "coar": "Coar",
    "loo": "LOO",
    "gp": "GP",
    "nc": "NC",
    "ii": "II",
    "atp": "AtP",
}
# What the abbreviations stand for (coar.baselines), for the footnotes.
METHOD_NAMES = {
    "loo": "leave-one-out (each component ablated alone)",
    "gp": "gradient x parameter",
    "nc": "neuron conductance",
    "ii": "internal influence",
    "atp": "attribution patching",
}
MARGIN = {
    "classifier": "margin = correct-class logit minus the largest other logit",
    "causal_lm": (
        "margin = next-token margin (correct-token logit minus the largest other logit), "
        "averaged over the story's tokens"
    ),
}


def methods_footnote(methods) -> str:
    """The footnote defining the method abbreviations among ``methods``; says why GP and
    AtP coincide when both are shown."""
    named = [f"{METHOD_LABELS[m]} = {METHOD_NAMES[m]}" for m in METHOD_NAMES if m in methods]
    text = "; ".join(named) + "." if named else ""
    if {"gp", "atp"} <= set(methods):
        text += (
            " GP and AtP give the same attributions by construction (every component is"
            " linear in its own weights), so their bars are equal."
        )
    return text


@dataclass
class EvaluationPanel:
    setup: str
    summary: pd.DataFrame  # method, alpha_test, mean_corr, ci_low, ci_high
    example_id: int
    alpha_test: float
    true: np.ndarray  # (K,) true outputs of the scatter example
    pred: np.ndarray  # (K,) Coar's predictions


def figure_evaluating_coar(
    panels: list[EvaluationPanel], path, title: str = "", output: str = "classifier"
) -> None:
    """Fig. 1: per setup, a true-vs-predicted scatter and bars of mean correlation.
    ``output`` names what the attributions explain (a key of `MARGIN`): it defines the
    margin in the footnote."""
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(10, 3.6 * len(panels)), squeeze=False, layout="constrained"
    )
    for (ax_scatter, ax_bars), panel in zip(axes, panels, strict=True):
        corr = per_example_correlation(panel.true[:, None], panel.pred[:, None])[0]
        ax_scatter.scatter(panel.pred, panel.true, s=12, alpha=0.7, label="one ablated model")
        lims = [min(panel.true.min(), panel.pred.min()), max(panel.true.max(), panel.pred.max())]
        ax_scatter.plot(lims, lims, color="grey", lw=1, ls="--", label="prediction = truth")
        ax_scatter.set_xlabel("margin predicted by Coar (logits)")
        ax_scatter.set_ylabel("true margin of the ablated model (logits)")
        ax_scatter.set_title(
            f"{panel.setup}, example {panel.example_id}: r = {corr:.2f}\n"
            f"({len(panel.true)} random ablations of a fraction $\\alpha$ = "
            f"{panel.alpha_test:g} of the components)",
            fontsize="medium",
        )
        ax_scatter.legend(loc="upper left", fontsize="small", framealpha=0.9)
        _correlation_bars(ax_bars, panel.summary)
        ax_bars.set_title(
            f"{panel.setup}: how well each method predicts\nthe margins of ablated models",
            fontsize="medium",
        )
    if title:
        fig.suptitle(title, fontweight="bold")
    methods = set().union(*(set(p.summary["method"]) for p in panels))
    add_footnote(
        fig,
        f"{MARGIN[output]}; r = Pearson correlation of true and predicted margins over the "
        "ablations of one example; bars: its mean over all evaluation examples, with 95% "
        "bootstrap intervals.\n" + methods_footnote(methods),
    )
    save_figure(fig, path)


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
    ax.set_xlabel(r"fraction of components ablated, $\alpha_{test}$")
    ax.set_ylabel("mean correlation r\n(true vs predicted margin)")
    lowest = summary["ci_low"].min()  # NaN-skipping; NaN if no method has a mean
    ax.set_ylim(min(0.0, float(lowest) - 0.05) if np.isfinite(lowest) else 0.0, 1.0)
    ax.axhline(0, color="black", lw=0.8)
    legend_outside(ax, title="method")


def spaced_ticks(values, min_ratio: float = 1.4) -> list:
    """The values to label on a log axis: each at least ``min_ratio`` times the last one
    kept, so that neighbours (1000, 1250) do not print their labels over each other.

    >>> spaced_ticks([250, 500, 1000, 1250, 2500, 5000])
    [250, 500, 1000, 2500, 5000]
    """
    kept = []
    for v in values:
        if not kept or v >= kept[-1] * min_ratio:
            kept.append(v)
    return kept


SOLVER_LABELS = {"least_squares": "least squares", "ridge": "ridge", "lasso": "lasso"}


def plot_sample_efficiency(tables: dict[str, pd.DataFrame], path) -> None:
    """One panel per setup: held-out correlation against m per solver."""
    fig, axes = plt.subplots(
        1, len(tables), figsize=(5.5 * len(tables) + 1.5, 3.8), squeeze=False, layout="constrained"
    )
    for ax, (setup, table) in zip(axes[0], tables.items(), strict=True):
        m_full = int(table["m"].max())
        for solver, group in table.groupby("solver", sort=False):
            group = group.sort_values("m")
            ax.plot(
                group["m"],
                group["mean_corr"],
                marker="o",
                ms=3,
                label=SOLVER_LABELS.get(solver, solver.replace("_", " ")),
            )
            ax.fill_between(group["m"], group["ci_low"], group["ci_high"], alpha=0.2)
        target = table.query("solver == 'least_squares' and m == @m_full")["mean_corr"]
        if len(target):
            ax.axhline(
                float(target.iloc[0]),
                color="grey",
                ls="--",
                lw=0.8,
                label=f"least squares on all m = {m_full}",
            )
        ax.axvline(m_full / 4, color="grey", ls=":", lw=0.8, label=f"m = {m_full // 4} (a quarter)")
        ax.set_xscale("log")
        ticks = spaced_ticks(sorted(table["m"].unique()))
        ax.set_xticks(ticks, [str(m) for m in ticks])
        ax.minorticks_off()
        ax.set_xlabel("ablations m used for the fit (log scale)")
        ax.set_ylabel(
            "mean correlation r on held-out\nablations "
            f"($\\alpha_{{test}}$ = {table['alpha_test'].iloc[0]:g})"
        )
        ax.set_title(f"{setup}: attribution accuracy against m", fontsize="medium")
        legend_outside(ax, title="regression solver")
    fig.suptitle("How many ablations each regression solver needs", fontweight="bold")
    add_footnote(
        fig,
        "r = Pearson correlation of the true and predicted outputs (margins) of freshly"
        " ablated models, per example; lines: its mean over"
        " examples, bands: 95% bootstrap intervals. Ridge and lasso pick their penalty on a"
        " validation share of the m ablations.",
    )
    save_figure(fig, path)
