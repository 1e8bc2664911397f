"""True outputs of freshly ablated models at one alpha_test (masks never used for fitting)."""

import numpy as np
import torch

from coar.atomic import atomic_path
from coar.device import resolve_device
from coar.evaluation import fresh_mask_rows, stream_mask_keys
from coar_workflow.jobs import job_label, load_setup_of_rule
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.evaluation
alpha = float(snakemake.wildcards.alpha)
setup = load_setup_of_rule(snakemake, resolve_device(snakemake.params.device))
stream = f"eval/{alpha:g}"
# Skip any row whose mask is also a training mask (only possible with few components).
rows = fresh_mask_rows(
    cfg["seed"],
    stream,
    cfg["n_masks"],
    len(setup.spec),
    alpha,
    exclude=stream_mask_keys(snakemake.params.training_run, len(setup.spec)),
)
log.info("%d fresh masks, %d rows of %s skipped", len(rows), rows[-1] + 1 - len(rows), stream)
attribution_run = setup.attribution_run(
    n_masks=cfg["n_masks"],
    alpha=alpha,
    seed=cfg["seed"],
    stream=stream,
    masks_per_batch=snakemake.params.masks_per_batch,
    precision=snakemake.params.precision,
    compile=snakemake.params.compile,
    name=f"{job_label(snakemake)} at alpha_test {alpha:g}",
)
masks, outputs = attribution_run.ablate_rows(rows)
with atomic_path(snakemake.output[0]) as tmp, open(tmp, "wb") as f:
    np.savez(f, alpha=alpha, masks=masks, outputs=outputs, rows=rows)
record_provenance(snakemake)
