"""Gather complete ablation shards into one FFCV beton."""

from coar.logs import log_to
from coar.store import gather_to_beton

log = log_to(snakemake.log[0])
gather_to_beton(list(snakemake.input), snakemake.params.n_masks, snakemake.output[0])
log.info(
    "%d shards, %d rows -> %s", len(snakemake.input), snakemake.params.n_masks, snakemake.output[0]
)
