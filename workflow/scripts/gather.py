"""Gather complete ablation shards of one run into one FFCV beton."""

from coar.logs import log_to
from coar.store import gather_to_beton, run_id

log = log_to(snakemake.log[0])
cfg = snakemake.params.ablation
run = run_id(cfg["seed"], "train", cfg["alpha_train"], cfg["n_masks"])
gather_to_beton(list(snakemake.input), cfg["n_masks"], run, snakemake.output[0])
log.info(
    "%d shards, %d rows of run %s -> %s",
    len(snakemake.input),
    cfg["n_masks"],
    run,
    snakemake.output[0],
)
