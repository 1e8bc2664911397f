"""The attribution file format, and a reader for the original code's ``datamodels.pt``.

One ``.pt`` file (torch.save of plain tensors, lists and scalars, loadable with
``weights_only=True``) per setup and method:

- ``weight``: float32 (|C|, N), raw mask units: the predicted output of example j
  under keep-mask v (1 = component kept) is ``bias[j] + v @ weight[:, j]``;
- ``bias``: float32 (N,);
- ``lam``: float32 (N,), the regularisation each example was fitted with, in the
  solver's per-row scaling (0 = least squares; see `coar.regression`);
- ``component_names`` (|C| strings), ``example_ids`` (N ints);
- ``meta``: dict with at least ``setup``, ``method``, ``solver`` and the ablation
  run (``alpha_train``, ``n_masks``, ``seed``), plus fit diagnostics (rows used,
  validation rows, validation correlation per example, lambda grid). Files
  converted from the original's ``datamodels.pt`` carry ``source``, the unit
  conversion used and ``n_nan`` / ``nan_examples``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from coar.serialization import load_torch, save_torch

log = logging.getLogger(__name__)


@dataclass
class Attributions:
    """Attributions of N examples' outputs to |C| components, in raw mask units: the
    predicted output of example j under keep-mask v is ``bias[j] + v @ weight[:, j]``.

    >>> a = Attributions(np.array([[1.0, 0.0], [0.5, 2.0]]), np.array([0.0, 1.0]),
    ...                  ["conv[0]", "conv[1]"], [10, 11])
    >>> a.predict(np.array([[1, 0], [1, 1]]))  # two keep-masks
    array([[1. , 1. ],
           [1.5, 3. ]])
    """

    weight: np.ndarray
    bias: np.ndarray
    component_names: list[str]
    example_ids: list[int]
    lam: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        p, n = self.weight.shape
        if self.bias.shape != (n,):
            raise ValueError(f"bias has shape {self.bias.shape}, expected ({n},)")
        if len(self.component_names) != p or len(self.example_ids) != n:
            raise ValueError("component_names / example_ids do not match weight's shape")
        if self.lam is None:
            self.lam = np.zeros(n, dtype=np.float32)

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Predicted outputs (K, N) for keep-masks (K, |C|)."""
        return np.asarray(masks, dtype=np.float64) @ self.weight + self.bias

    def top(self, example: int, k: int = 10, *, largest: bool = True) -> list[tuple[str, float]]:
        """The ``k`` components with the largest (or smallest) weight for one example (its
        column, 0..N-1), as (component name, weight), strongest first.

        >>> a = Attributions(np.array([[0.5], [-1.0], [2.0]]), np.zeros(1),
        ...                  ["conv[0]", "conv[1]", "conv[2]"], [0])
        >>> a.top(0, k=2)
        [('conv[2]', 2.0), ('conv[0]', 0.5)]
        """
        if not 0 <= example < self.weight.shape[1]:
            raise IndexError(f"example {example} is not in 0..{self.weight.shape[1] - 1}")
        column = self.weight[:, example]
        order = np.argsort(-column if largest else column, kind="stable")[:k]
        return [(self.component_names[i], float(column[i])) for i in order]

    def save(self, path) -> None:
        payload = {
            "weight": torch.from_numpy(np.ascontiguousarray(self.weight, dtype=np.float32)),
            "bias": torch.from_numpy(np.asarray(self.bias, dtype=np.float32)),
            "lam": torch.from_numpy(np.asarray(self.lam, dtype=np.float32)),
            "component_names": list(self.component_names),
            "example_ids": [int(i) for i in self.example_ids],
            "meta": dict(self.meta),
        }
        save_torch(payload, path)

    @classmethod
    def load(cls, path) -> Attributions:
        data = load_torch(path, "coar attributions file")
        return cls(
            weight=data["weight"].double().numpy(),
            bias=data["bias"].double().numpy(),
            lam=data["lam"].numpy(),
            component_names=list(data["component_names"]),
            example_ids=list(data["example_ids"]),
            meta=dict(data["meta"]),
        )


def from_original_datamodels(
    path,
    component_names: list[str] | None = None,
    example_ids: list[int] | None = None,
    *,
    alpha: float | None = None,
    mask_mean=None,
    mask_std=None,
) -> Attributions:
    """Convert the original code's ``datamodels.pt`` into our format (raw mask units).

    The original (fast_l1) fits on standardised masks, predicting
    ``bias + sum_i weight[i] * (v_i - mu_i) / sigma_i`` with mu, sigma the mean and
    standard deviation of each mask column over the rows it was fitted on, and saves
    ``{weight: (|C|, N), bias: (N,), lam: (N,)}`` (published files may be float16
    and may hold only ``weight``). In raw units ``w = weight / sigma`` and
    ``b = bias - sum_i w_i mu_i``.

    mu and sigma are not saved in the file: pass the fitted masks' ``mask_mean`` and
    ``mask_std`` (|C| each) for the exact conversion, or the ablation fraction
    ``alpha`` to use the Bernoulli values mu = 1 - alpha, sigma = sqrt(alpha (1 - alpha))
    (their sampling error is O(1/sqrt(m)); per-example correlations and Welch
    statistics are unaffected by that per-component constant).

    Example (a file of the original code's format, fitted at alpha = 0.1):

    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save({"weight": torch.ones(3, 2), "bias": torch.zeros(2)}, path)
    >>> from_original_datamodels(path, alpha=0.1).weight.shape
    (3, 2)

    NaNs are kept where they are, counted in ``meta["n_nan"]`` (entries) and
    ``meta["nan_examples"]`` (ids of examples with any NaN weight or bias), and logged.
    A file without ``bias`` gets bias 0 in standardised units (``meta["has_bias"]``
    is False): predictions are then offset by the unknown mean output, which does
    not change correlations.
    """
    path = Path(path)
    data = load_torch(path, "published attributions file")
    if not isinstance(data, dict) or "weight" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with key 'weight', found {keys}")
    weight = data["weight"].to(torch.float64).numpy()
    if weight.ndim != 2:
        raise ValueError(f"{path}: weight has shape {tuple(weight.shape)}, expected (|C|, N)")
    p, n = weight.shape
    if component_names is not None and len(component_names) != p:
        hint = " (it looks transposed: N x |C|)" if len(component_names) == n else ""
        raise ValueError(
            f"{path}: weight has {p} rows, but {len(component_names)} component names were "
            f"given{hint}"
        )
    if example_ids is not None and len(example_ids) != n:
        raise ValueError(f"{path}: weight has {n} columns, but {len(example_ids)} example ids")
    has_bias = "bias" in data
    bias_std = data["bias"].to(torch.float64).numpy().reshape(-1) if has_bias else np.zeros(n)
    if bias_std.shape != (n,):
        raise ValueError(f"{path}: bias has shape {bias_std.shape}, expected ({n},)")

    if mask_mean is not None or mask_std is not None:
        if mask_mean is None or mask_std is None:
            raise ValueError("give both mask_mean and mask_std, or alpha")
        mu = np.asarray(mask_mean, dtype=np.float64).reshape(-1)
        sigma = np.asarray(mask_std, dtype=np.float64).reshape(-1)
        if mu.shape != (p,) or sigma.shape != (p,):
            raise ValueError(f"mask_mean and mask_std must have {p} entries (one per component)")
        units = "exact: mask_mean and mask_std given"
    elif alpha is not None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        mu = np.full(p, 1.0 - alpha)
        sigma = np.full(p, np.sqrt(alpha * (1.0 - alpha)))
        units = f"bernoulli: mu = 1 - alpha, sigma = sqrt(alpha (1 - alpha)), alpha = {alpha}"
    else:
        raise ValueError(
            f"{path}: converting to raw mask units needs the masks' per-component mean and "
            "std (mask_mean=, mask_std=) or the ablation fraction (alpha=, e.g. the setup's "
            "alpha_train)"
        )
    # The original divides by (sigma + 1e-32): a never-ablated component has sigma 0.
    raw = weight / (sigma + 1e-32)[:, None]
    bias = bias_std - mu @ np.nan_to_num(raw, nan=0.0)
    bias[np.isnan(raw).any(0)] = np.nan

    nan_weight = np.isnan(weight)
    nan_examples_mask = nan_weight.any(0) | np.isnan(bias_std)
    ids = list(range(n)) if example_ids is None else [int(i) for i in example_ids]
    nan_examples = [ids[j] for j in np.flatnonzero(nan_examples_mask)]
    n_nan = int(nan_weight.sum() + np.isnan(bias_std).sum())
    if n_nan:
        log.warning(
            "%s: %d NaN entries (weight and bias) in %d of %d examples (first ids %s); "
            "they are kept as NaN",
            path,
            n_nan,
            len(nan_examples),
            n,
            nan_examples[:10],
        )
    lam = data["lam"].to(torch.float64).numpy().reshape(-1) if "lam" in data else np.zeros(n)
    return Attributions(
        weight=raw,
        bias=bias,
        component_names=(
            [f"component[{i}]" for i in range(p)]
            if component_names is None
            else list(component_names)
        ),
        example_ids=ids,
        lam=lam,
        meta={
            "method": "coar",
            "solver": "fast_l1 (original)",
            "source": str(path),
            "source_dtype": str(data["weight"].dtype).removeprefix("torch."),
            "units": units,
            "lam_units": "fast_l1's, on standardised masks",
            "has_bias": has_bias,
            "n_nan": n_nan,
            "nan_examples": nan_examples,
        },
    )
