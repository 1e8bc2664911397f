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
from coar.evaluation import evaluate_methods, per_example_correlation
from coar_replication.plots import save_figure

log = logging.getLogger(__name__)


def attribution_agreement(ours: Attributions, theirs: Attributions) -> np.ndarray:
    """Per example, the correlation across components of our weights and theirs (NaN
    where theirs hold NaNs or either column is constant)."""
    if ours.weight.shape != theirs.weight.shape:
        raise ValueError(
            f"our attributions are {ours.weight.shape} (components x examples), the "
            f"published ones {theirs.weight.shape}: they do not describe the same setup"
        )
    if list(ours.component_names) != list(theirs.component_names):
        raise ValueError("our attributions and the published ones name different components")
    return per_example_correlation(ours.weight, theirs.weight)


def compare_published(
    ours: Attributions,
    theirs: Attributions,
    outputs_paths: list,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per_example).

    summary: one row per (method, alpha_test) with the mean held-out correlation, its
    bootstrap interval and how many examples had no finite correlation (e.g. NaN
    weights), plus rows ``agreement`` (alpha_test NaN) for the attribution agreement.
    per_example: example, agreement and each method's correlation per alpha_test.
    """
    agreement = attribution_agreement(ours, theirs)
    methods = {"coar": ours, "published": theirs}
    summary, per_example = evaluate_methods(methods, outputs_paths, n_boot=n_boot, seed=seed)
    missing = per_example.groupby(["method", "alpha_test"])["corr"].apply(
        lambda c: int((~np.isfinite(c)).sum())
    )
    summary["n_undefined"] = [
        missing[(m, a)] for m, a in zip(summary["method"], summary["alpha_test"], strict=True)
    ]
    finite = agreement[np.isfinite(agreement)]
    summary = pd.concat(
        [
            summary,
            pd.DataFrame(
                [
                    dict(
                        method="agreement",
                        alpha_test=np.nan,
                        mean_corr=float(finite.mean()) if finite.size else np.nan,
                        ci_low=float(np.percentile(finite, 2.5)) if finite.size else np.nan,
                        ci_high=float(np.percentile(finite, 97.5)) if finite.size else np.nan,
                        n_undefined=int(agreement.size - finite.size),
                    )
                ]
            ),
        ],
        ignore_index=True,
    )
    wide = per_example.pivot_table(
        index="example", columns=["method", "alpha_test"], values="corr", dropna=False
    )
    wide.columns = [f"{m}_alpha{a:g}" for m, a in wide.columns]
    wide.insert(0, "agreement", agreement)
    n_nan = theirs.meta.get("n_nan", 0)
    if n_nan:
        log.warning(
            "the published attributions hold %d NaN entries (%d examples); those examples "
            "have no correlation and are left out of the means",
            n_nan,
            len(theirs.meta.get("nan_examples", [])),
        )
    return summary, wide.reset_index()


def figure_published_comparison(setup: str, summary: pd.DataFrame, per_example, path) -> None:
    """Left: per-example agreement of the two attributions; right: held-out accuracy of
    ours and theirs per alpha_test under our evaluation."""
    fig, (ax_hist, ax_bars) = plt.subplots(1, 2, figsize=(9, 3.6))
    agreement = per_example["agreement"].to_numpy(dtype=float)
    finite = agreement[np.isfinite(agreement)]
    ax_hist.hist(finite, bins=min(30, max(5, finite.size // 5)), range=(-1, 1))
    ax_hist.set_xlabel("correlation of our and the published attributions")
    ax_hist.set_ylabel("examples")
    ax_hist.set_title(f"{setup}: agreement ({agreement.size - finite.size} undefined)")
    rows = summary[summary["method"] != "agreement"]
    alphas = sorted(rows["alpha_test"].unique(), reverse=True)
    x = np.arange(len(alphas))
    for i, (method, label) in enumerate((("coar", "ours"), ("published", "published"))):
        r = rows[rows["method"] == method].set_index("alpha_test").loc[alphas]
        err = [r["mean_corr"] - r["ci_low"], r["ci_high"] - r["mean_corr"]]
        ax_bars.bar(x + (i - 0.5) * 0.4, r["mean_corr"], 0.4, yerr=err, capsize=3, label=label)
    ax_bars.set_xticks(x, [f"{a:g}" for a in alphas])
    ax_bars.set_xlabel(r"ablation fraction $\alpha_{test}$")
    ax_bars.set_ylabel("mean correlation (held out)")
    ax_bars.axhline(0, color="black", lw=0.8)
    ax_bars.legend(frameon=False)
    ax_bars.set_title(f"{setup}: attribution accuracy")
    save_figure(fig, path, tight_layout=True)
