"""The provenance of a figure, readable (same text as `coar provenance`), and as the
page the report shows."""

from coar.atomic import atomic_path
from coar_workflow.logs import log_to
from coar_workflow.provenance import chain, format_chain, record_provenance
from coar_workflow.report_html import text_page, write_page

log = log_to(snakemake.log[0])
steps = chain(snakemake.input[0])
text = format_chain(steps) + "\n"
with atomic_path(snakemake.output.text) as tmp:
    tmp.write_text(text)
write_page(text_page(text, f"Provenance of {snakemake.input[0]}"), snakemake.output.page)
log.info("%d steps led to %s", len(steps), snakemake.input[0])
record_provenance(snakemake)
