"""Figures of the Coar-Edit experiments (paper Figs. 2, 3, 4 and 7).

Each function takes the experiment's tables (one per panel) and writes the
figure atomically; the caller writes the same tables as the figure's CSV.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from coar_replication.plots import save_figure


def _panels(n: int, width: float = 4.2, height: float = 3.4, columns: int = 3):
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _chosen(ax, k: int) -> None:
    ax.axvline(k, color="black", ls=":", lw=1, label=f"chosen k = {k} (validation)")


def figure_errors(tables: list[tuple[dict, pd.DataFrame]], title: str, path) -> None:
    """Fig. 2: histograms of the accuracy change of each single-example fix."""
    fig, axes = _panels(len(tables), width=8, columns=1)
    for ax, (summary, table) in zip(axes, tables, strict=True):
        fixed = table[table.fixed]
        changes = 100 * fixed[["train_change", "test_change"]]
        lo, hi = min(changes.min().min(), -0.5), max(changes.max().max(), 0.5)
        bins = np.linspace(lo, hi, 25)
        for column, label in (("train_change", "train"), ("test_change", "test (other examples)")):
            ax.hist(100 * fixed[column], bins=bins, alpha=0.6, label=label)
            ax.axvline(100 * fixed[column].median(), ls="--", lw=1, color="grey")
        ax.set_xlabel("accuracy change of the edited model (points)")
        ax.set_ylabel("edits (one per fixed error)")
        ax.set_title(
            f"{summary['setup']}: {summary['n_fixed']}/{summary['n_errors']} test errors fixed, "
            f"median k = {summary['median_k']}"
        )
        ax.legend(frameon=False)
    fig.suptitle(title)
    save_figure(fig, path, tight_layout=True)


def figure_forget(tables: list[tuple[dict, pd.DataFrame]], title: str, path) -> None:
    """Fig. 3: test accuracy of every class against k, one panel per forgotten class."""
    fig, axes = _panels(len(tables))
    for ax, (summary, sweep) in zip(axes, tables, strict=True):
        target = summary["target_class"]
        classes = sorted(
            int(c[len("test_class") : -len("_accuracy")])
            for c in sweep
            if c.startswith("test_class")
        )
        for c in classes:
            if c != target:
                ax.plot(sweep.k, 100 * sweep[f"test_class{c}_accuracy"], color="grey", lw=0.7)
        ax.plot(
            sweep.k,
            100 * sweep.test_others_accuracy,
            color="tab:blue",
            lw=2,
            label="other classes (mean)",
        )
        ax.plot(
            sweep.k,
            100 * sweep.test_target_accuracy,
            color="tab:red",
            lw=2,
            label=f"class {target} (forgotten)",
        )
        _chosen(ax, summary["k"])
        ax.set_xlabel("components ablated (k)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.set_title(f"{summary['setup']}: forget class {target}")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path, tight_layout=True)


def figure_subpopulation(tables: list[tuple[dict, pd.DataFrame]], title: str, path) -> None:
    """Fig. 4: average, group-average and worst-group test accuracy against k."""
    fig, axes = _panels(len(tables))
    for ax, (summary, sweep) in zip(axes, tables, strict=True):
        for column, label in (
            ("test_accuracy", "average"),
            ("test_group_average_accuracy", "group average"),
            ("test_worst_group_accuracy", "worst group"),
        ):
            ax.plot(sweep.k, 100 * sweep[column], lw=2, label=label)
        _chosen(ax, summary["k"])
        ax.set_xlabel("components ablated (k)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{summary['setup']}: target groups {summary['target_groups']}")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path, tight_layout=True)


def figure_backdoor(tables: list[tuple[dict, pd.DataFrame]], title: str, path) -> None:
    """Fig. 7: clean and triggered test accuracy against k; paired-output correlation."""
    fig, axes = _panels(len(tables), columns=1, width=6)
    for ax, (summary, sweep) in zip(axes, tables, strict=True):
        ax.plot(sweep.k, 100 * sweep.test_clean_accuracy, lw=2, label="clean")
        ax.plot(sweep.k, 100 * sweep.test_triggered_accuracy, lw=2, label="triggered")
        _chosen(ax, summary["k"])
        ax.set_xlabel("components ablated (k)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            f"{summary['setup']}: clean/triggered output correlation "
            f"{summary['test_paired_correlation_before']:.2f} -> "
            f"{summary['test_paired_correlation_after']:.2f}"
        )
        ax.set_ylim(-3, 103)
        ax.legend(frameon=False)
    fig.suptitle(title)
    save_figure(fig, path, tight_layout=True)


FIGURES = {
    "errors": figure_errors,
    "forget": figure_forget,
    "subpopulation": figure_subpopulation,
    "backdoor": figure_backdoor,
    "typographic": figure_backdoor,  # same panels: clean vs attacked accuracy against k
}


def figure_table(tables: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """The numbers behind a figure: every panel's table, labelled by its setup (and class)."""
    parts = []
    for summary, table in tables:
        labels = {"setup": summary["setup"]}
        if "target_class" in summary:
            labels["target_class"] = summary["target_class"]
        parts.append(table.assign(**labels)[[*labels, *table.columns]])
    return pd.concat(parts, ignore_index=True)
