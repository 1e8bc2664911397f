"""The sample-efficiency figure (PDF and PNG), its numbers and the ablations each solver
needs (CSV, and each as the report's table)."""

import pandas as pd

from coar.atomic import atomic_path
from coar_replication.plots import plot_sample_efficiency
from coar_replication.sample_efficiency import ablations_needed, least_squares_equivalent_m
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance
from coar_workflow.report_html import table_page, write_page

log = log_to(snakemake.log[0])
tables = {
    setup: pd.read_csv(path)
    for setup, path in zip(snakemake.params.setups, snakemake.input.tables, strict=True)
}
for table in tables.values():
    table["least_squares_equivalent_m"] = least_squares_equivalent_m(table)
output = snakemake.output
plot_sample_efficiency(tables, [output.figure, output.png])
numbers = pd.concat([t.assign(setup=s) for s, t in tables.items()], ignore_index=True)
summary = pd.concat([ablations_needed(t).assign(setup=s) for s, t in tables.items()])
for frame, path, page in (
    (numbers, output.numbers, output.numbers_html),
    (summary, output.summary, output.summary_html),
):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    write_page(table_page(frame, path), page)
log.info("ablations needed to reach least squares at full m:\n%s", summary.to_string())
record_provenance(snakemake)
