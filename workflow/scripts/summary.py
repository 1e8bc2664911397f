"""Write the run's SUMMARY.md: every figure's headline numbers (coar_workflow.summary)."""

from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance
from coar_workflow.summary import write_summary

log = log_to(snakemake.log[0])
path = write_summary(
    snakemake.params.results_dir,
    snakemake.output[0],
    files=list(snakemake.input),
    figures=snakemake.params.figures,
    name=snakemake.params.results_dir,
)
log.info("wrote %s from %d summary files", path, len(snakemake.input))
record_provenance(snakemake)
