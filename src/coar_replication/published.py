"""The authors' published attributions next to ours.

Two questions per setup: do the two attributions agree (per example, the
Pearson correlation between our weight column and theirs, across components),
and how accurate are theirs under our evaluation (the same fresh masks and true
outputs, the same per-example correlation protocol)?
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from coar.attributions import Attributions
from coar.evaluation import check_finite, evaluate_methods, per_example_correlation
from coar_replication.plots import add_footnote, legend_outside, save_figure

log = logging.getLogger(__name__)


def published_missing(theirs: Attributions) -> np.ndarray:
    """Columns of the published attributions that the conversion counted as holding NaN
    (``meta["nan_examples"]``): those examples have no attribution, hence no correlation.
    NaN or inf anywhere else is a failure (the file was not converted as recorded)."""
    declared = {int(i) for i in theirs.meta.get("nan_examples", [])}
    ids = [int(i) for i in theirs.example_ids]
    columns = np.asarray([j for j, i in enumerate(ids) if i in declared], dtype=np.int64)
    values = np.vstack([theirs.weight, np.asarray(theirs.bias, dtype=np.float64)[None]])
    check_finite(values, "the published attributions", "the weights or biases", columns)
    return columns


def attribution_agreement(ours: Attributions, theirs: Attributions) -> np.ndarray:
    """Per example, the correlation across components of our weights and theirs (NaN
    where theirs are declared missing or either column is constant). NaN or inf in ours,
    or undeclared ones in theirs, raise a ValueError naming the examples."""
    if ours.weight.shape != theirs.weight.shape:
        raise ValueError(
            f"our attributions are {ours.weight.shape} (components x examples), the "
            f"published ones {theirs.weight.shape}: they do not describe the same setup"
        )
    if list(ours.component_names) != list(theirs.component_names):
        raise ValueError("our attributions and the published ones name different components")
    check_finite(ours.weight, "our attributions", "the weights")
    missing = published_missing(theirs)
    with np.errstate(invalid="ignore"):
        agreement = per_example_correlation(ours.weight, theirs.weight)
    agreement[missing] = np.nan
    return agreement


def compare_published(
    ours: Attributions,
    theirs: Attributions,
    outputs_paths: list,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per_example).

    summary: one row per (method, alpha_test) with the mean held-out correlation and its
    bootstrap interval (`coar.evaluation.summarize_correlations`), plus a row
    ``agreement`` (alpha_test NaN) for the attribution agreement (its mean and the 2.5 and
    97.5 percentiles over examples); ``n_undefined`` counts the examples without a
    correlation (the published NaNs, constant columns) and ``n_examples`` all of them.
    Every number is over all examples: where any is undefined, mean_corr, ci_low and
    ci_high are NaN rather than a mean over the rest.
    per_example: example, agreement and each method's correlation per alpha_test.
    """
    agreement = attribution_agreement(ours, theirs)
    methods = {"coar": ours, "published": theirs}
    summary, per_example = evaluate_methods(
        methods,
        outputs_paths,
        n_boot=n_boot,
        seed=seed,
        sources={"coar": "our attributions", "published": "the published attributions"},
        missing={"published": published_missing(theirs)},
    )
    n_undefined = int((~np.isfinite(agreement)).sum())
    defined = not n_undefined
    summary = pd.concat(
        [
            summary,
            pd.DataFrame(
                [
                    dict(
                        method="agreement",
                        alpha_test=np.nan,
                        mean_corr=float(agreement.mean()) if defined else np.nan,
                        ci_low=float(np.percentile(agreement, 2.5)) if defined else np.nan,
                        ci_high=float(np.percentile(agreement, 97.5)) if defined else np.nan,
                        n_examples=agreement.size,
                        n_undefined=n_undefined,
                    )
                ]
            ),
        ],
        ignore_index=True,
    )
    # The columns as before, the count of all examples last.
    summary = summary[[c for c in summary.columns if c != "n_examples"] + ["n_examples"]]
    wide = per_example.pivot_table(
        index="example", columns=["method", "alpha_test"], values="corr", dropna=False
    )
    wide.columns = [f"{m}_alpha{a:g}" for m, a in wide.columns]
    wide.insert(0, "agreement", agreement)
    n_declared = len(published_missing(theirs))
    for r in summary[summary["n_undefined"] > 0].itertuples():
        where = "" if r.method == "agreement" else f" at alpha_test {r.alpha_test:g}"
        why = "" if r.method == "coar" else f", {n_declared} of them NaN in the published file"
        log.warning(
            "%s%s: %d of %d examples have no correlation%s; its mean and interval are NaN, "
            "not a mean over the others",
            r.method,
            where,
            r.n_undefined,
            r.n_examples,
            why,
        )
    return summary, wide.reset_index()


def figure_published_comparison(setup: str, summary: pd.DataFrame, per_example, path) -> None:
    """Left: per-example agreement of the two attributions; right: held-out accuracy of
    ours and theirs per alpha_test under our evaluation."""
    fig, (ax_hist, ax_bars) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    agreement = per_example["agreement"].to_numpy(dtype=float)
    finite = agreement[np.isfinite(agreement)]
    ax_hist.hist(finite, bins=min(30, max(5, finite.size // 5)), range=(-1, 1))
    ax_hist.set_xticks([-1, -0.5, 0, 0.5, 1])
    ax_hist.set_xlabel("correlation of our and the published attributions")
    ax_hist.set_ylabel("examples")
    ax_hist.set_title(f"{setup}: agreement ({agreement.size - finite.size} undefined)")
    rows = summary[summary["method"] != "agreement"]
    alphas = sorted(rows["alpha_test"].unique(), reverse=True)
    x = np.arange(len(alphas))
    for i, (method, label) in enumerate((("coar", "ours"), ("published", "published"))):
        r = rows[rows["method"] == method].set_index("alpha_test").loc[alphas]
        err = [r["mean_corr"] - r["ci_low"], r["ci_high"] - r["mean_corr"]]
        at = x + (i - 0.5) * 0.4
        ax_bars.bar(at, r["mean_corr"].fillna(0), 0.4, yerr=err, capsize=3, label=label)
        # No bar where examples have no correlation: the mean is undefined, and says so.
        undefined = r["n_undefined"].to_numpy() if "n_undefined" in r else np.zeros(len(r))
        for xi, n, total in zip(at, undefined, r.get("n_examples", undefined), strict=True):
            if n:
                ax_bars.text(
                    xi,
                    0.02,
                    f"n/a: {n:g} of {total:g} undefined",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax_bars.set_xticks(x, [f"{a:g}" for a in alphas])
    ax_bars.set_xlabel(r"fraction of components ablated, $\alpha_{test}$")
    ax_bars.set_ylabel("mean correlation r\n(true vs predicted margin)")
    ax_bars.axhline(0, color="black", lw=0.8)
    legend_outside(ax_bars, title="attributions")
    ax_bars.set_title(f"{setup}: how well each predicts\nthe margins of ablated models")
    fig.suptitle(f"Our attributions and the authors' published ones ({setup})")
    add_footnote(
        fig,
        "Agreement: Pearson correlation of the two attribution vectors of an example, across"
        " components. r: Pearson correlation of true and predicted margins (correct-class"
        " logit minus the largest other logit) of freshly ablated models, per example; bars:"
        " its mean over examples with 95% bootstrap intervals.",
    )
    save_figure(fig, path)
