"""A Coar-Edit figure and the CSV of the numbers behind it."""

import json

import pandas as pd

from coar_replication.edit_plots import FIGURES, figure_table
from coar_workflow.edit_io import write_csv
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
paths = list(snakemake.input)
# Inputs come in (table, summary.json) pairs, one pair per panel.
tables = [
    (json.loads(open(summary).read()), pd.read_csv(table))
    for table, summary in zip(paths[::2], paths[1::2], strict=True)
]
FIGURES[snakemake.params.experiment](tables, snakemake.params.title, snakemake.output.figure)
write_csv(figure_table(tables), snakemake.output.table)
log.info("wrote %s and %s", snakemake.output.figure, snakemake.output.table)
record_provenance(snakemake)
