"""The provenance of a figure, readable, for the report (same text as `coar provenance`)."""

from coar.atomic import atomic_path
from coar_workflow.logs import log_to
from coar_workflow.provenance import chain, format_chain, record_provenance

log = log_to(snakemake.log[0])
steps = chain(snakemake.input[0])
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(format_chain(steps) + "\n")
log.info("%d steps led to %s", len(steps), snakemake.input[0])
record_provenance(snakemake)
