"""A Coar-Edit figure (PDF and PNG) and the CSV of the numbers behind it (also as the
report's table)."""

import json

import pandas as pd

from coar_replication.edit_plots import FIGURES, figure_table
from coar_workflow.edit_io import write_csv
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance
from coar_workflow.report_html import table_page, write_page

log = log_to(snakemake.log[0])
paths = list(snakemake.input)
# Inputs come in (table, summary.json) pairs, one pair per panel.
tables = [
    (json.loads(open(summary).read()), pd.read_csv(table))
    for table, summary in zip(paths[::2], paths[1::2], strict=True)
]
output, experiment = snakemake.output, snakemake.params.experiment
options = {"group_names": snakemake.params.group_names} if experiment == "subpopulation" else {}
FIGURES[experiment](tables, snakemake.params.title, [output.figure, output.png], **options)
numbers = figure_table(tables)
write_csv(numbers, output.table)
write_page(table_page(numbers, output.table), output.table_html)
log.info("wrote %s, %s and %s", output.figure, output.png, output.table)
record_provenance(snakemake)
