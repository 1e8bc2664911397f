"""Coar: attribute a model's predictions to its components, and edit models with them.

One call from a model to attributions, and a resumable object for long runs:

>>> import torch, coar
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
...                             torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
>>> images, labels = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
>>> _ = model(images)  # materialise the lazy layer
>>> attributions = coar.attribute(model, images, labels, components="conv_filters",
...                               n_masks=200, alpha=0.25, progress=False)
>>> len(attributions.top(0, k=2))
2

Everything user-facing is importable from ``coar``: `attribute`, `AttributionRun`,
`evaluate` and `Attributions`; the component specs (`ComponentSpec`, `conv_filters`,
`linear_neurons`, `mlp_neurons`, `attention_heads`, `vit_neurons`, `gpt2_rows`,
`component_spec`, `output_modules`, `zero_components`) and the exactness check
(`check_exact`);
the masking engine (`MaskedModel`); the output functions (`margin`); the baselines
(`compute_baseline`); and the Coar-Edit core (`welch_t`, `greedy_sweep`, `apply_edit`).
Lower-level pieces live in the submodules: `coar.regression` (streamed solvers),
`coar.store` (shards and FFCV component datasets), `coar.masks` (deterministic masks),
`coar.evaluation` (correlations and fresh masks).
"""

from coar.api import AttributionRun, Evaluation, attribute, evaluate
from coar.attributions import Attributions, from_original_datamodels
from coar.baselines import compute_baseline
from coar.components import (
    ComponentSpec,
    attention_heads,
    component_spec,
    conv_filters,
    gpt2_rows,
    linear_neurons,
    mlp_neurons,
    output_modules,
    vit_neurons,
    zero_components,
)
from coar.edit import Edit, apply_edit, greedy_sweep, welch_t
from coar.exactness import check_exact
from coar.masking import MaskedModel
from coar.masks import sample_masks
from coar.outputs import margin

__version__ = "0.1.0"

__all__ = [
    "AttributionRun",
    "Attributions",
    "ComponentSpec",
    "Edit",
    "Evaluation",
    "MaskedModel",
    "apply_edit",
    "attention_heads",
    "attribute",
    "check_exact",
    "component_spec",
    "compute_baseline",
    "conv_filters",
    "evaluate",
    "from_original_datamodels",
    "gpt2_rows",
    "greedy_sweep",
    "linear_neurons",
    "margin",
    "mlp_neurons",
    "output_modules",
    "sample_masks",
    "vit_neurons",
    "welch_t",
    "zero_components",
]
