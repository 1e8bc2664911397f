"""Build component datasets: outputs of many randomly ablated models on every example.

Speed: the examples are preprocessed once and stay on the
device; each forward pass holds (masks x examples) pairs, every sample masked by
its own keep-mask (``coar.masking``); convnets run channels-last; CUDA runs under
bf16 autocast (``precision``); ``compile=True`` compiles the forward pass; the
batch size is chosen when ``masks_per_batch="auto"`` (from free GPU memory; on a
CPU, the fastest probed size) and halved on out-of-memory. Progress and throughput
go to the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from coar.components import ComponentSpec
from coar.masking import (
    Inputs,
    MaskedModel,
    ablated_outputs,
    auto_max_batch,
    batch_size_of,
    is_convnet_on_images,
    to_channels_last,
    uses_bf16,
)
from coar.masks import sample_masks

log = logging.getLogger(__name__)


def ablate_rows(
    model: torch.nn.Module,
    components: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: Callable,
    *,
    seed: int,
    stream: str,
    rows,
    alpha: float,
    masks_per_batch: int | str = "auto",
    precision: str = "auto",
    compile: bool = False,
    progress: bool = True,
    desc: str = "ablate",
    batch_dim: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep-masks (len(rows), |C|) and outputs (len(rows), N) for the given mask rows.

    ``inputs`` (a tensor, or a mapping of tensors passed as keyword arguments) and
    ``labels`` are on the model's device; ``output_fn(model_output, labels)`` gives one
    float per example. Mask row i is drawn from (``seed``, ``stream``, i) with a fraction
    ``alpha`` of the components ablated (`coar.masks.sample_masks`). ``desc`` labels the
    progress bar.

    ``masks_per_batch``: ablated models per forward pass, or ``"auto"`` (fill the
    GPU; on the CPU, the fastest of a few probed sizes). ``precision``: ``auto``
    (bf16 on CUDA, fp32 on the CPU), ``fp32`` or ``bf16``. ``batch_dim``: the
    inputs' example dimension (`coar.masking.MaskedModel`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    model = model.eval()
    inputs = to_channels_last(model, inputs)
    masked = MaskedModel(model, components, compile=compile, batch_dim=batch_dim)
    bf16 = uses_bf16(labels.device, precision)
    masks = sample_masks(seed, stream, rows, len(components), alpha)
    n_examples = batch_size_of(inputs, masked.batch_dim)
    outputs = np.empty((len(rows), n_examples), dtype=np.float32)
    with masked:  # hooks stay installed for the whole run (a compiled graph keeps them)
        if masks_per_batch == "auto":
            max_batch = auto_max_batch(masked, inputs, labels, output_fn, bf16)
            masks_per_batch = max(1, max_batch // n_examples)
        else:
            max_batch = int(masks_per_batch) * n_examples
        log.info(
            "%d (mask, example) pairs per forward pass (%d masks), %s, channels_last %s, "
            "compile %s",
            min(max_batch, int(masks_per_batch) * n_examples),
            masks_per_batch,
            "bf16 autocast" if bf16 else "fp32",
            is_convnet_on_images(model, inputs),
            compile,
        )
        start = time.perf_counter()
        # Logs are files: refresh every few seconds, not on every batch.
        bar = tqdm(
            total=len(rows),
            desc=desc,
            disable=not progress,
            unit="mask",
            mininterval=5,
        )
        for k0 in range(0, len(rows), masks_per_batch):
            chunk = torch.from_numpy(masks[k0 : k0 + masks_per_batch]).to(labels.device)
            outputs[k0 : k0 + len(chunk)] = ablated_outputs(
                masked,
                inputs,
                labels,
                chunk,
                output_fn,
                max_batch=max_batch,
                autocast=bf16,
            ).numpy()
            bar.update(len(chunk))
            rate = bar.n * n_examples / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{rate:,.0f} examples/s", refresh=False)
        bar.close()
    elapsed = time.perf_counter() - start
    log.info(
        "%d masks x %d examples in %.1f s: %.1f masks/s, %.0f examples/s",
        len(rows),
        n_examples,
        elapsed,
        len(rows) / elapsed,
        len(rows) * n_examples / elapsed,
    )
    if not np.isfinite(outputs).all():
        bad = np.flatnonzero(~np.isfinite(outputs).all(axis=1))
        raise FloatingPointError(
            f"{desc}: non-finite outputs under mask rows {rows[bad[:10]].tolist()} "
            f"({len(bad)} of {len(rows)}): check the model and the output function"
        )
    return masks, outputs
