"""One shard of the component dataset: outputs of randomly ablated models."""

import torch

from coar.ablate import ablate_rows
from coar.device import describe, resolve_device
from coar.edit_examples import example_set_of_rule
from coar.logs import log_to
from coar.masks import shard_rows
from coar.provenance import record_provenance
from coar.setups import load_setup_of_rule
from coar.store import write_shard

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg, run = snakemake.params.ablation, snakemake.params.run
device = resolve_device(snakemake.params.device)
setup = load_setup_of_rule(snakemake, device, examples=example_set_of_rule(snakemake))
rows = shard_rows(run["n_rows"], cfg["n_shards"], int(snakemake.wildcards.shard))
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
masks, outputs = ablate_rows(
    setup,
    seed=run["seed"],
    stream=run["stream"],
    rows=rows,
    alpha=run["alpha"],
    masks_per_batch=cfg["masks_per_batch"],
    precision=cfg["precision"],  # the schema fills in defaults
    compile=cfg["compile"],
)
write_shard(snakemake.output[0], rows, masks, outputs, run)
record_provenance(snakemake)
