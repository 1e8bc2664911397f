"""The public entry points: `attribute` for the common case, `AttributionRun` for long,
sharded runs, and `evaluate` for scoring attributions on fresh ablations.

`attribute` is `AttributionRun` in one call: it ablates every mask row in memory and
fits. `AttributionRun` writes each shard of rows to a store directory (atomically, so a
killed job leaves no shard that looks finished); shards can run in any order, on any
machine, and a rerun skips finished ones. The workflow's ablation rules call the same
`AttributionRun.ablate_rows`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from coar.ablate import ablate_rows
from coar.atomic import atomic_path
from coar.attributions import Attributions
from coar.components import ComponentSpec, component_spec
from coar.cost import check_fit
from coar.device import resolve_device
from coar.evaluation import (
    check_finite,
    fresh_mask_rows,
    mask_keys,
    per_example_correlation,
    summarize_correlations,
)
from coar.exactness import verify_exact
from coar.fit import fit_from_batches
from coar.masking import Inputs, resolve_batch_dim, take
from coar.masks import shard_rows
from coar.outputs import OutputFn, check_output, labels_for, output_fn
from coar.store import iter_shards, run_id, write_shard

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"


def _to_device(inputs: Inputs, device: torch.device) -> Inputs:
    """A tensor, or a mapping of tensors (a dict, a tokenizer's ``BatchEncoding``), on
    ``device``; values that are lists become tensors."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("inputs is an empty mapping: pass the model's keyword tensors")
        moved = {}
        for key, value in inputs.items():
            try:
                moved[key] = torch.as_tensor(value).to(device)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"inputs[{key!r}] is not a tensor ({error}): pad the examples to one "
                    "length, e.g. tokenizer(texts, padding=True, return_tensors='pt')"
                ) from None
        return moved
    if not isinstance(inputs, torch.Tensor | np.ndarray | list | tuple):
        raise TypeError(
            f"inputs must be a tensor of examples or a mapping of keyword tensors (a "
            f"tokenizer's output), got {type(inputs).__name__}"
        )
    return torch.as_tensor(inputs).to(device)


def _check_examples(inputs: Inputs, batch_dim: int) -> None:
    """Every tensor of a mapping holds the same examples along ``batch_dim``."""
    if not isinstance(inputs, Mapping):
        return
    sizes = {
        k: tuple(v.shape)[batch_dim] if v.dim() > batch_dim else None for k, v in inputs.items()
    }
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(
            f"the tensors of the inputs mapping must hold the same examples along dimension "
            f"{batch_dim} (batch_dim), got sizes {sizes}"
        )


def _components(model: nn.Module, components: ComponentSpec | str) -> ComponentSpec:
    if isinstance(components, str):
        components = component_spec(model, components)
    if not isinstance(components, ComponentSpec):
        raise TypeError(
            f"components must be a ComponentSpec (e.g. coar.conv_filters(model)) or a kind "
            f"name, got {type(components).__name__}"
        )
    if len(components) == 0:
        raise ValueError(
            "the component spec is empty: it names no component to ablate (check its "
            "include=/exclude= patterns against the model's module names)"
        )
    components.check(model)
    return components


class AttributionRun:
    """A resumable, shardable Coar run: ablate mask rows in shards, then fit.

    ``model`` is any ``nn.Module``; ``inputs`` a tensor of examples or a mapping of
    tensors passed as keyword arguments (a dict, or a tokenizer's ``BatchEncoding``);
    ``labels`` what the ``output`` is taken for, one per example (classes for
    ``"margin"``, next tokens for ``"next_token_margin"``: see `coar.outputs`; None: the
    unablated model's predictions). ``components`` is a `ComponentSpec` or a kind name
    (``"conv_filters"``, ``"attention_heads"``, ...). ``output`` is a name of
    `coar.outputs.OUTPUTS` (``"margin"``, ``"next_token_margin"``) or a function
    ``output_fn(model_output, labels) -> (batch,)`` float tensor, checked once on a few
    examples at construction. ``solver`` is the one `fit` uses by default; at
    construction, before any ablation, the run logs the fit's projected memory and
    time and warns when it will be weak (fewer masks than components, for least
    squares) or will not fit the device's memory (`coar.cost.check_fit`; None: the
    run is never fitted, no check). Mask row i ablates a random fraction
    ``alpha`` of the components, drawn from (``seed``, ``stream``, i): rows can be made
    in any order and remade bit-identically. ``store`` is the directory that holds
    the shards and the run's record (``run.json``); a second run on the same store
    must have the same settings. ``identity`` adds fields that tell this run's shards
    from others' (e.g. which examples), recorded in every shard and checked by `fit`.
    ``batch_dim``: the inputs' example dimension (1 for sequence-first models; see
    `coar.masking.MaskedModel`). ``check_exact``: first compare the masking engine
    with literally zeroing the weights on 2 examples and 2 masks, and raise if they
    differ by more than 1e-4 of the outputs' scale (1e-2 for half-precision weights;
    `coar.exactness.verify_exact`).

    Example:

    >>> import torch, coar
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
    ...                             torch.nn.LazyLinear(3)).eval()
    >>> images, labels = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    >>> _ = model(images)  # materialise the lazy layer
    >>> import tempfile
    >>> run = coar.AttributionRun(model, images, labels, components=coar.conv_filters(model),
    ...                           n_masks=200, alpha=0.25, store=tempfile.mkdtemp(),
    ...                           progress=False)
    >>> paths = [run.ablate(shard=k, n_shards=2) for k in range(2)]
    >>> run.missing_shards(2)
    []
    >>> attributions = run.fit()
    >>> attributions.weight.shape  # (components, examples)
    (4, 8)
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Inputs,
        labels: torch.Tensor | None = None,
        *,
        components: ComponentSpec | str,
        output: str | OutputFn = "margin",
        n_masks: int,
        alpha: float = 0.1,
        seed: int = 0,
        stream: str = "train",
        store=None,
        device: str | torch.device = "auto",
        masks_per_batch: int | str = "auto",
        precision: str = "auto",
        compile: bool = False,
        progress: bool = True,
        name: str = "model",
        identity: dict | None = None,
        batch_dim: int | None = None,
        check_exact: bool = True,
        solver: str | None = "least_squares",
    ):
        if int(n_masks) < 1:
            raise ValueError(f"n_masks must be at least 1, got {n_masks}")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.inputs = _to_device(inputs, self.device)
        self.spec = _components(self.model, components)
        self.output_fn = output_fn(output)
        examples_dim = resolve_batch_dim(self.model, batch_dim)
        _check_examples(self.inputs, examples_dim)
        if labels is not None:
            labels = torch.as_tensor(labels).to(self.device)
        labels = labels_for(self.output_fn, self.model, self.inputs, labels, examples_dim)
        self.labels = labels.to(self.device)
        check_output(self.output_fn, self.model, self.inputs, self.labels, examples_dim)
        if check_exact:  # the engine against literal zeroing, on 2 examples and 2 masks
            first = take(self.inputs, slice(0, 2), examples_dim)
            verify_exact(self.model, self.spec, first, self.labels[:2], output=self.output_fn,
                         batch_dim=examples_dim)  # fmt: skip
        self.solver = solver
        if solver is not None:  # before any ablation: warn while there is time to change
            check_fit(len(self.spec), int(n_masks), self.n_examples, solver, self.device)
        self.run = run_id(seed, stream, alpha, n_masks)
        for key, value in (identity or {}).items():
            if key in self.run and self.run[key] != value:
                raise ValueError(f"identity {key}={value!r} contradicts {key}={self.run[key]!r}")
            self.run[key] = value
        self.settings = dict(masks_per_batch=masks_per_batch, precision=precision)
        self.settings.update(compile=compile, batch_dim=batch_dim)
        self.progress, self.name = progress, name
        self.store = None if store is None else Path(store)
        if self.store is not None:
            self._check_store()

    @property
    def n_examples(self) -> int:
        return len(self.labels)

    def _record(self) -> dict:
        return {
            "run": self.run,
            "n_components": len(self.spec),
            "n_examples": self.n_examples,
            "components": self.spec.table(),
        }

    def _check_store(self) -> None:
        path = self.store / RUN_RECORD
        record = json.loads(json.dumps(self._record()))  # tuples as JSON lists
        if path.is_file():
            found = json.loads(path.read_text())
            if found != record:
                raise ValueError(
                    f"{path} records another run ({found['run']}, {found['n_components']} "
                    f"components, {found['n_examples']} examples) than this one "
                    f"({record['run']}, {record['n_components']} components, "
                    f"{record['n_examples']} examples): use another store directory"
                )
            return
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")

    def ablate_rows(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Keep-masks (len(rows), |C|) and outputs (len(rows), N) of the given mask rows."""
        return ablate_rows(
            self.model,
            self.spec,
            self.inputs,
            self.labels,
            self.output_fn,
            seed=self.run["seed"],
            stream=self.run["stream"],
            rows=rows,
            alpha=self.run["alpha"],
            progress=self.progress,
            desc=f"ablate {self.name} (masks: {self.run['stream']})",
            **self.settings,
        )

    def shard_path(self, shard: int, n_shards: int) -> Path:
        if self.store is None:
            raise ValueError("this run has no store: pass store=DIRECTORY to write shards")
        return self.store / f"shard_{shard:05d}_of_{n_shards:05d}.npz"

    def ablate(self, shard: int = 0, n_shards: int = 1, path=None) -> Path:
        """Ablate shard ``shard`` of ``n_shards`` (contiguous rows) and write it, atomically,
        to ``path`` (default: the store). A finished shard in the store is not redone."""
        rows = shard_rows(self.run["n_rows"], n_shards, shard)
        in_store = path is None
        path = self.shard_path(shard, n_shards) if in_store else Path(path)
        if in_store and path.is_file():
            log.info("shard %d of %d: %s is finished", shard, n_shards, path)
            return path
        masks, outputs = self.ablate_rows(rows)
        write_shard(path, rows, masks, outputs, self.run)
        return path

    def missing_shards(self, n_shards: int) -> list[int]:
        """The shards of ``n_shards`` that the store does not hold yet."""
        return [k for k in range(n_shards) if not self.shard_path(k, n_shards).is_file()]

    def shards(self) -> list[Path]:
        if self.store is None:
            raise ValueError("this run has no store: pass store=DIRECTORY to write shards")
        return sorted(self.store.glob("shard_*.npz"))

    def fit(
        self,
        solver: str | None = None,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        shards: Sequence | None = None,
        device: str | torch.device | None = None,
        **fit_options,
    ) -> Attributions:
        """Fit one linear model per example on the shards (default: every shard in the
        store, which must hold rows 0..n_masks-1 exactly once). ``solver``: least_squares,
        ridge or lasso (default: the run's; ridge and lasso pick lambda per example on
        the ``val_fraction`` held-out rows); ``fit_options`` as
        `coar.fit.fit_from_batches`'s fit_config."""
        paths = list(self.shards() if shards is None else shards)
        return self._fit(
            lambda: iter_shards(paths, self.run), solver, val_fraction, seed, device, fit_options
        )

    def _fit(self, batches, solver, val_fraction, seed, device, fit_options) -> Attributions:
        n_rows = self.run["n_rows"]
        solver = solver or self.solver or "least_squares"
        fit_config = {"solver": solver, "val_fraction": val_fraction, "seed": seed, **fit_options}
        return fit_from_batches(
            batches,
            n_rows,
            component_names=self.spec.names(),
            example_ids=list(range(self.n_examples)),
            fit_config=fit_config,
            meta={
                "setup": self.name,
                "method": "coar",
                "alpha_train": self.run["alpha"],
                "n_masks": n_rows,
                "seed": self.run["seed"],
            },
            device=self.device if device is None else resolve_device(str(device)),
            source=str(self.store) if self.store is not None else self.name,
            progress=self.progress,
        )

    def fit_in_memory(
        self,
        solver: str | None = None,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str | torch.device | None = None,
        **fit_options,
    ) -> Attributions:
        """Ablate every row in memory (no store) and fit: what `attribute` does."""
        rows = np.arange(self.run["n_rows"])
        masks, outputs = self.ablate_rows(rows)

        def batches(size: int = 2048):  # in batches: the fit's progress bar moves
            for start in range(0, len(rows), size):
                end = start + size
                yield masks[start:end], outputs[start:end], rows[start:end]

        return self._fit(batches, solver, val_fraction, seed, device, fit_options)

    def evaluate(self, attributions: Attributions, **kwargs) -> Evaluation:
        """`evaluate` on this run's model, examples, components and output."""
        return evaluate(
            attributions,
            self.model,
            self.inputs,
            self.labels,
            components=self.spec,
            output=self.output_fn,
            progress=self.progress,
            **{"alpha": self.run["alpha"], **self.settings, **kwargs},
        )


def attribute(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    *,
    components: ComponentSpec | str,
    output: str | OutputFn = "margin",
    n_masks: int = 1000,
    alpha: float = 0.1,
    solver: str = "least_squares",
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    **options,
) -> Attributions:
    """Coar attributions of ``output`` on every example to every component, in one call.

    Ablates ``n_masks`` random subsets of the components (each a fraction ``alpha``)
    with the masking engine, records the output on every example, and fits one linear
    model per example (``solver``: least_squares, ridge or lasso). ``inputs``: a tensor
    or a mapping of keyword tensors (a tokenizer's output); ``output``: ``"margin"``
    (classifiers, Hugging Face ``.logits`` too), ``"next_token_margin"`` (causal
    language models; labels are next tokens) or ``output_fn(model_output, labels) ->
    (batch,)``. Arguments as `AttributionRun`; ``options`` go to it
    (``masks_per_batch``, ``precision``, ``compile``, ``name``, ``batch_dim``,
    ``check_exact``) or to the fit (``val_fraction``, ``lambda_grid``, ...). Before
    ablating it logs the fit's projected cost and warns when the fit will be weak or
    too large; progress bars show examples/s. Returns `Attributions`:
    ``weight[c, j]`` is how much keeping component c adds to example j's output.

    Example:

    >>> import torch, coar
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
    >>> images = torch.randn(8, 1, 6, 6)
    >>> _ = model(images)  # materialise the lazy layer
    >>> attributions = coar.attribute(model, images, components="conv_filters",
    ...                               n_masks=100, progress=False)
    >>> attributions.weight.shape
    (4, 8)
    """
    run_keys = {"masks_per_batch", "precision", "compile", "name", "stream", "batch_dim"}
    run_keys |= {"check_exact"}
    run_options = {k: v for k, v in options.items() if k in run_keys}
    fit_options = {k: v for k, v in options.items() if k not in run_keys}
    run = AttributionRun(
        model,
        inputs,
        labels,
        components=components,
        output=output,
        n_masks=n_masks,
        alpha=alpha,
        seed=seed,
        device=device,
        progress=progress,
        solver=solver,
        **run_options,
    )
    return run.fit_in_memory(**fit_options)


@dataclass
class Evaluation:
    """How well attributions predict the outputs of freshly ablated models.

    ``correlations``: per example, the Pearson correlation across the fresh masks
    between true and predicted outputs (NaN where either does not vary). ``mean``,
    ``ci_low``, ``ci_high``: their mean over all examples, with a 95% bootstrap
    interval; ``n_undefined`` counts the examples without a correlation, and where there
    is any the three are NaN (a mean over fewer examples could only flatter).

    >>> print(Evaluation(0.1, np.array([0.9, 0.7, 0.8]), 0.8, 0.7, 0.9, 0))
    alpha 0.1: mean correlation 0.800 (95% CI 0.700..0.900) over 3 examples
    >>> print(Evaluation(0.1, np.array([0.9, 0.7, np.nan]), np.nan, np.nan, np.nan, 1))
    alpha 0.1: mean correlation undefined: 1 of 3 examples without a correlation
    """

    alpha: float
    correlations: np.ndarray
    mean: float
    ci_low: float
    ci_high: float
    n_undefined: int

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                dict(
                    alpha_test=self.alpha,
                    mean_corr=self.mean,
                    ci_low=self.ci_low,
                    ci_high=self.ci_high,
                    n_examples=len(self.correlations),
                    n_undefined=self.n_undefined,
                )
            ]
        )

    def __str__(self) -> str:
        if self.n_undefined:
            return (
                f"alpha {self.alpha:g}: mean correlation undefined: {self.n_undefined} of "
                f"{len(self.correlations)} examples without a correlation"
            )
        return (
            f"alpha {self.alpha:g}: mean correlation {self.mean:.3f} "
            f"(95% CI {self.ci_low:.3f}..{self.ci_high:.3f}) over "
            f"{len(self.correlations)} examples"
        )


def evaluate(
    attributions: Attributions,
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    *,
    components: ComponentSpec | str,
    output: str | OutputFn = "margin",
    alpha: float = 0.1,
    n_masks: int = 100,
    seed: int = 1,
    stream: str | None = None,
    exclude_masks: np.ndarray | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    n_bootstrap: int = 1000,
    **settings,
) -> Evaluation:
    """Score attributions on ``n_masks`` fresh ablations at fraction ``alpha``.

    Fresh masks come from their own stream (``seed``, ``stream``, default
    ``eval/<alpha>``); rows equal to one of ``exclude_masks`` (e.g. the training masks)
    are skipped. Returns an `Evaluation`.

    Example:

    >>> import torch, coar
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
    >>> images, labels = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    >>> _ = model(images)
    >>> attributions = coar.attribute(model, images, labels, components="conv_filters",
    ...                               n_masks=200, progress=False)
    >>> result = coar.evaluate(attributions, model, images, labels,
    ...                        components="conv_filters", n_masks=50, progress=False)
    >>> -1 <= result.mean <= 1
    True
    """
    stream = stream or f"eval/{alpha}"
    run = AttributionRun(
        model,
        inputs,
        labels,
        components=components,
        output=output,
        n_masks=n_masks,
        alpha=alpha,
        seed=seed,
        stream=stream,
        device=device,
        progress=progress,
        name="evaluation",
        solver=None,  # fresh masks are only ablated, never fitted
        **settings,
    )
    if attributions.weight.shape != (len(run.spec), run.n_examples):
        raise ValueError(
            f"attributions of shape {attributions.weight.shape} do not fit "
            f"{len(run.spec)} components x {run.n_examples} examples"
        )
    exclude = set() if exclude_masks is None else mask_keys(exclude_masks)
    rows = fresh_mask_rows(seed, stream, n_masks, len(run.spec), alpha, exclude)
    masks, true = run.ablate_rows(rows)
    check_finite(true, "evaluate", "the model's outputs under the fresh masks")
    with np.errstate(invalid="ignore", over="ignore"):
        pred = attributions.predict(masks)
    check_finite(pred, "evaluate", "the attributions' predictions")
    correlations = per_example_correlation(true, pred)
    numbers = summarize_correlations(correlations, n_boot=n_bootstrap, seed=seed)
    n_undefined = numbers["n_undefined"]
    if n_undefined == len(correlations):
        raise ValueError(
            "no example has a correlation: the true or predicted outputs do not vary "
            "across the fresh masks (raise alpha or n_masks)"
        )
    if n_undefined:
        log.warning(
            "%d of %d examples have no correlation (examples %s): the mean and its interval "
            "are NaN; Evaluation.correlations holds the others",
            n_undefined,
            len(correlations),
            np.flatnonzero(np.isnan(correlations))[:10].tolist(),
        )
    return Evaluation(
        alpha,
        correlations,
        numbers["mean_corr"],
        numbers["ci_low"],
        numbers["ci_high"],
        n_undefined,
    )
