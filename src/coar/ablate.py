"""Build component datasets: outputs of many randomly ablated models on every example."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from tqdm import tqdm

from coar.masking import MaskedModel, ablated_outputs
from coar.masks import sample_masks
from coar.setups import Setup

log = logging.getLogger(__name__)


def ablate_rows(
    setup: Setup,
    *,
    seed: int,
    stream: str,
    rows,
    alpha: float,
    masks_per_batch: int,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep-masks (len(rows), |C|) and outputs (len(rows), N) for the given mask rows."""
    rows = np.asarray(rows, dtype=np.int64)
    masked = MaskedModel(setup.model.eval(), setup.spec)
    masks = sample_masks(seed, stream, rows, len(setup.spec), alpha)
    outputs = np.empty((len(rows), setup.n_examples), dtype=np.float32)
    max_batch = masks_per_batch * setup.n_examples
    start = time.perf_counter()
    # Logs are files: refresh every few seconds, not on every batch.
    bar = tqdm(
        total=len(rows),
        desc=f"ablate {setup.name} [{stream}]",
        disable=not progress,
        unit="mask",
        mininterval=5,
    )
    for k0 in range(0, len(rows), masks_per_batch):
        chunk = torch.from_numpy(masks[k0 : k0 + masks_per_batch]).to(setup.inputs.device)
        outputs[k0 : k0 + len(chunk)] = ablated_outputs(
            masked, setup.inputs, setup.labels, chunk, setup.output_fn, max_batch=max_batch
        ).numpy()
        bar.update(len(chunk))
    bar.close()
    elapsed = time.perf_counter() - start
    log.info(
        "%d masks x %d examples in %.1f s: %.1f masks/s, %.0f examples/s",
        len(rows),
        setup.n_examples,
        elapsed,
        len(rows) / elapsed,
        len(rows) * setup.n_examples / elapsed,
    )
    if not np.isfinite(outputs).all():
        raise FloatingPointError(f"non-finite outputs from setup {setup.name!r} [{stream}]")
    return masks, outputs
