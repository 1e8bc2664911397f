"""One shard of the component dataset: outputs of randomly ablated models."""

import torch

from coar.device import describe, resolve_device
from coar.masks import shard_rows
from coar_workflow.jobs import example_set_of_rule, job_label, load_setup_of_rule
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg, run = snakemake.params.ablation, snakemake.params.run
device = resolve_device(snakemake.params.device)
setup = load_setup_of_rule(snakemake, device, examples=example_set_of_rule(snakemake))
shard = int(snakemake.wildcards.shard)
rows = shard_rows(run["n_rows"], cfg["n_shards"], shard)
log.info(
    "setup %s on %s: %d components, %d examples, rows %d..%d, alpha %g",
    setup.name,
    describe(device),
    len(setup.spec),
    setup.n_examples,
    rows.start,
    rows.stop - 1,
    run["alpha"],
)
attribution_run = setup.attribution_run(
    n_masks=run["n_rows"],
    alpha=run["alpha"],
    seed=run["seed"],
    stream=run["stream"],
    masks_per_batch=cfg["masks_per_batch"],
    precision=cfg["precision"],  # the schema fills in defaults
    compile=cfg["compile"],
    identity=run,  # with the example set, where the run has one
    name=job_label(snakemake)
    + (f", shard {shard + 1} of {cfg['n_shards']}" if cfg["n_shards"] > 1 else ""),
)
attribution_run.ablate(shard, cfg["n_shards"], path=snakemake.output[0])
record_provenance(snakemake)
