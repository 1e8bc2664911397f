"""One shard of the component dataset: outputs of randomly ablated models."""

import torch

from coar.ablate import ablate_rows
from coar.device import describe, resolve_device
from coar.logs import log_to
from coar.masks import shard_rows
from coar.setups import load_setup
from coar.store import run_id, write_shard

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.ablation
device = resolve_device(snakemake.params.device)
setup = load_setup(
    snakemake.wildcards.setup,
    snakemake.params.kind,
    snakemake.input.model,
    snakemake.input.data,
    device,
)
rows = shard_rows(cfg["n_masks"], cfg["n_shards"], int(snakemake.wildcards.shard))
log.info(
    "setup %s on %s: %d components, %d examples, rows %d..%d, alpha %g",
    setup.name,
    describe(device),
    len(setup.spec),
    setup.n_examples,
    rows.start,
    rows.stop - 1,
    cfg["alpha_train"],
)
masks, outputs = ablate_rows(
    setup,
    seed=cfg["seed"],
    stream="train",
    rows=rows,
    alpha=cfg["alpha_train"],
    masks_per_batch=cfg["masks_per_batch"],
)
run = run_id(cfg["seed"], "train", cfg["alpha_train"], cfg["n_masks"])
write_shard(snakemake.output[0], rows, masks, outputs, run)
