"""Gather complete ablation shards of one run into one FFCV beton."""

import ffcv.writer

from coar.store import gather_to_beton
from coar_workflow.jobs import job_label
from coar_workflow.logs import labelled_progress, log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
run = snakemake.params.run
# FFCV's writer draws an unlabelled bar; logs are files: refresh every few seconds.
with labelled_progress(ffcv.writer, f"gather {job_label(snakemake)}", unit="row", mininterval=5):
    gather_to_beton(list(snakemake.input), run, snakemake.output.beton)
log.info(
    "%s: %d shards, %d rows (masks: %s, alpha %g) -> %s",
    job_label(snakemake),
    len(snakemake.input),
    run["n_rows"],
    run["stream"],
    run["alpha"],
    snakemake.output.beton,
)
record_provenance(snakemake)
