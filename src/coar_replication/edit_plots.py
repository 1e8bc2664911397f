"""Figures of the Coar-Edit experiments (paper Figs. 2, 3, 4 and 7, and 5.5's CLIP).

Each function takes the experiment's tables (one per panel) and writes the figure
atomically (`save_figure`: one path or several, e.g. PDF and PNG); the caller writes the
same tables as the figure's CSV. The panels share one legend, outside the axes, and
each panel's title names its own chosen k.
"""

from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from coar_replication.plots import add_footnote, save_figure

CHOSEN_K = "chosen k (smallest k that meets the goal on validation data)"


def _panels(n: int, width: float = 4.2, height: float = 3.4, columns: int = 3):
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(width * columns + 2.5, height * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _chosen(ax, k: int) -> None:
    ax.axvline(k, color="black", ls=":", lw=1.2, label=CHOSEN_K)


def _finish(fig, axes, title: str, footnote: str, path) -> None:
    """Title, one legend for all panels (the first panel's entries) to the right of the
    first row's last panel, the footnote, and the files."""
    handles, labels = axes[0].get_legend_handles_labels()
    first_row = [ax for ax in axes if ax.get_subplotspec().rowspan.start == 0]
    first_row[-1].legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        borderaxespad=0,
        fontsize="small",
    )
    if title:
        fig.suptitle(title, fontweight="bold")
    add_footnote(fig, footnote)
    save_figure(fig, path)


def _percent_axes(ax, xlabel: str = "components ablated, k") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(-3, 103)


def figure_errors(tables: list[tuple[dict, pd.DataFrame]], title: str, path) -> None:
    """Fig. 2: histograms of the accuracy change of each single-example fix."""
    fig, axes = _panels(len(tables), width=7, columns=1)
    for ax, (summary, table) in zip(axes, tables, strict=True):
        fixed = table[table.fixed]
        changes = 100 * fixed[["train_change", "test_change"]]
        lo, hi = min(changes.min().min(), -0.5), max(changes.max().max(), 0.5)
        bins = np.linspace(lo, hi, 25)
        for column, label, color in (
            ("train_change", "training set", "tab:blue"),
            ("test_change", "test set (the other test examples)", "tab:orange"),
        ):
            ax.hist(100 * fixed[column], bins=bins, alpha=0.6, color=color, label=label)
            median = 100 * fixed[column].median()
            ax.axvline(
                median, ls="--", lw=1.2, color=color, label=f"median, {label.split(' (')[0]}"
            )
        ax.set_xlabel("accuracy change of the edited model (percentage points)")
        ax.set_ylabel("edited models\n(one per fixed error)")
        ax.set_title(
            f"{summary['setup']}: {summary['n_fixed']} of {summary['n_errors']} test errors "
            f"fixed, median k = {summary['median_k']:g} components",
            fontsize="medium",
        )
    _finish(
        fig,
        axes,
        title,
        "Each misclassified test example is fixed on its own by ablating the k components"
        " with the lowest Welch t-statistic between its attributions and those of reference"
        " examples (k: the fewest that fix it with validation accuracy within the configured"
        " tolerance). A change of 0: the edit left the accuracy on those examples as it was.",
        path,
    )


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
        others = [c for c in classes if c != target]
        for i, c in enumerate(others):
            ax.plot(
                sweep.k,
                100 * sweep[f"test_class{c}_accuracy"],
                color="grey",
                lw=0.7,
                label="each other class" if i == 0 else None,
            )
        ax.plot(
            sweep.k,
            100 * sweep.test_others_accuracy,
            color="tab:blue",
            lw=2,
            label="other classes, mean",
        )
        ax.plot(
            sweep.k,
            100 * sweep.test_target_accuracy,
            color="tab:red",
            lw=2,
            label="forgotten class",
        )
        _chosen(ax, summary["k"])
        _percent_axes(ax)
        ax.set_title(
            f"{summary['setup']}: forgetting class {target}\n(chosen k = {summary['k']})",
            fontsize="medium",
        )
    _finish(
        fig,
        axes,
        title,
        "Components are ablated in order of the Welch t-statistic between their"
        " attributions on the class's training examples and on the other classes' (highest"
        " first); the goal: that class's accuracy falls while the other classes keep theirs.",
        path,
    )


def _groups(groups) -> list[str]:
    """The summary's target groups ('1,2', or a list) as a list of names."""
    if isinstance(groups, str):
        return [g.strip() for g in groups.split(",") if g.strip()]
    return [str(g) for g in np.atleast_1d(groups)]


def figure_subpopulation(
    tables: list[tuple[dict, pd.DataFrame]], title: str, path, group_names=None
) -> None:
    """Fig. 4: average, group-average and worst-group test accuracy against k.
    ``group_names``: setup -> {group number: description}, where the setup has them
    (defined in the footnote)."""
    fig, axes = _panels(len(tables), width=5)
    for ax, (summary, sweep) in zip(axes, tables, strict=True):
        # Average and group average can lie on top of each other: dashed over solid,
        # with markers, keeps both visible.
        for column, label, style in (
            ("test_accuracy", "average (all test images)", dict(lw=2.5, alpha=0.8)),
            (
                "test_group_average_accuracy",
                "group average (mean over groups)",
                dict(lw=1.5, ls="--", marker="o", ms=3),
            ),
            ("test_worst_group_accuracy", "worst group", dict(lw=2)),
        ):
            ax.plot(sweep.k, 100 * sweep[column], label=label, **style)
        _chosen(ax, summary["k"])
        _percent_axes(ax)
        ax.set_title(
            f"{summary['setup']}: chosen k = {summary['k']}\n"
            f"edited groups: {', '.join(_groups(summary['target_groups']))}",
            fontsize="medium",
        )
    named = [
        f"{setup}: " + "; ".join(f"{g} = {name}" for g, name in names.items())
        for setup, names in (group_names or {}).items()
        if names
    ]
    _finish(
        fig,
        axes,
        title,
        "Groups: label x spurious attribute"
        + (f" ({'. '.join(named)})" if named else "")
        + ". The edited groups are minority groups, in which the attribute disagrees with"
        " the label. Components are ablated in order of the Welch t-statistic between"
        " their attributions on the edited groups' training examples and on the others'"
        " (lowest first); the goal: a higher worst-group accuracy with the average kept.",
        path,
    )


def figure_backdoor(
    tables: list[tuple[dict, pd.DataFrame]],
    title: str,
    path,
    attacked: str = "triggered",
    attack: str = "the trigger",
) -> None:
    """Fig. 7 (and 5.5's typographic attacks): clean and attacked test accuracy against
    k; the correlation of paired clean/attacked outputs before and after the edit."""
    fig, axes = _panels(len(tables), columns=1, width=6)
    for ax, (summary, sweep) in zip(axes, tables, strict=True):
        ax.plot(sweep.k, 100 * sweep.test_clean_accuracy, lw=2, label="clean test images")
        ax.plot(
            sweep.k,
            100 * sweep.test_triggered_accuracy,
            lw=2,
            label=f"{attacked} test images\n(accuracy on their true labels)",
        )
        _chosen(ax, summary["k"])
        _percent_axes(ax)
        ax.set_title(
            f"{summary['setup']}: chosen k = {summary['k']} of {summary['n_components']} "
            f"components\nclean vs {attacked} margin correlation: "
            f"{summary['test_paired_correlation_before']:.2f} before, "
            f"{summary['test_paired_correlation_after']:.2f} after the edit",
            fontsize="medium",
        )
    _finish(
        fig,
        axes,
        title,
        f"{attacked.capitalize()} accuracy counts {attacked} images classified as their true"
        f" class: it rises as the edit removes the effect of {attack}. Margin correlation:"
        f" Pearson correlation, over test images, of the margins (correct-class logit minus"
        f" the largest other logit) with and without {attack}.",
        path,
    )


FIGURES = {
    "errors": figure_errors,
    "forget": figure_forget,
    "subpopulation": figure_subpopulation,
    "backdoor": figure_backdoor,
    # same panels: clean vs attacked accuracy against k
    "typographic": partial(figure_backdoor, attacked="attacked", attack="the written text"),
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
