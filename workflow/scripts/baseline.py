"""One baseline's attributions (LOO, GP, NC, II or AtP) in Coar's format and units."""

import torch

from coar.baselines import compute_baseline
from coar.device import describe, resolve_device
from coar.logs import log_to
from coar.setups import load_setup

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
method = snakemake.wildcards.method
device = resolve_device(snakemake.params.device)
setup = load_setup(
    snakemake.wildcards.setup,
    snakemake.params.kind,
    snakemake.input.model,
    snakemake.input.data,
    device,
)
log.info(
    "setup %s on %s: baseline %s, %d components, %d examples",
    setup.name,
    describe(device),
    method,
    len(setup.spec),
    setup.n_examples,
)
attributions = compute_baseline(
    method,
    setup.model,
    setup.spec,
    setup.inputs,
    setup.labels,
    setup.output_fn,
    n_steps=snakemake.params.evaluation["integration_steps"],
    max_batch=snakemake.params.masks_per_batch * setup.n_examples,
    meta={"setup": setup.name},
)
attributions.save(snakemake.output[0])
