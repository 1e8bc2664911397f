"""The sample-efficiency figure, its numbers and the ablations each solver needs."""

import pandas as pd

from coar.atomic import atomic_path
from coar_replication.plots import plot_sample_efficiency
from coar_replication.sample_efficiency import ablations_needed, least_squares_equivalent_m
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
tables = {
    setup: pd.read_csv(path)
    for setup, path in zip(snakemake.params.setups, snakemake.input.tables, strict=True)
}
for table in tables.values():
    table["least_squares_equivalent_m"] = least_squares_equivalent_m(table)
plot_sample_efficiency(tables, snakemake.output.figure)
numbers = pd.concat([t.assign(setup=s) for s, t in tables.items()], ignore_index=True)
summary = pd.concat([ablations_needed(t).assign(setup=s) for s, t in tables.items()])
for frame, path in ((numbers, snakemake.output.numbers), (summary, snakemake.output.summary)):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
log.info("ablations needed to reach least squares at full m:\n%s", summary.to_string())
record_provenance(snakemake)
