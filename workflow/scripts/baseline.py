"""One baseline's attributions (LOO, GP, NC, II or AtP) in Coar's format and units."""

import torch

from coar.baselines import compute_baseline
from coar.device import describe, resolve_device
from coar.masking import MaskedModel, auto_max_batch, uses_bf16
from coar_workflow.jobs import load_setup_of_rule
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
method = snakemake.wildcards.method
device = resolve_device(snakemake.params.device)
setup = load_setup_of_rule(snakemake, device)
bf16 = uses_bf16(device, snakemake.params.precision)
masks_per_batch = snakemake.params.masks_per_batch
if masks_per_batch == "auto":  # as the ablations: fill the GPU; the fastest probed size on a CPU
    masked = MaskedModel(setup.model.eval(), setup.spec)
    max_batch = auto_max_batch(masked, setup.inputs, setup.labels, setup.output_fn, bf16)
else:
    max_batch = int(masks_per_batch) * setup.n_examples
log.info(
    "setup %s on %s: baseline %s, %d components, %d examples, %d samples per forward pass",
    setup.name,
    describe(device),
    method,
    len(setup.spec),
    setup.n_examples,
    max_batch,
)
attributions = compute_baseline(
    method,
    *setup.engine_args(),
    n_steps=snakemake.params.evaluation["integration_steps"],
    max_batch=max_batch,
    autocast=bf16,
    meta={"setup": setup.name},
)
attributions.save(snakemake.output[0])
record_provenance(snakemake)
