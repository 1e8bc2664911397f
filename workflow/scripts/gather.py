"""Gather complete ablation shards of one run into one FFCV beton."""

from coar.store import gather_to_beton
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
run = snakemake.params.run
gather_to_beton(list(snakemake.input), run, snakemake.output.beton)
log.info("%d shards of run %s -> %s", len(snakemake.input), run, snakemake.output.beton)
record_provenance(snakemake)
