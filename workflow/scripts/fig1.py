"""Figure 1, "Evaluating Coar"."""

import numpy as np
import pandas as pd

from coar.atomic import atomic_path
from coar.attributions import Attributions
from coar_replication.plots import EvaluationPanel, figure_evaluating_coar
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance
from coar_workflow.report_html import table_page, write_page

log = log_to(snakemake.log[0])
panels = []
for setup, summary_path, attr_path, outputs_path, example in zip(
    snakemake.params.setups,
    snakemake.input.summaries,
    snakemake.input.attributions,
    snakemake.input.outputs,
    snakemake.params.scatter_examples,
    strict=True,
):
    attributions = Attributions.load(attr_path)
    with np.load(outputs_path) as data:
        masks, true, alpha = data["masks"], data["outputs"], float(data["alpha"])
    if not 0 <= example < true.shape[1]:
        raise IndexError(
            f"config key setups.{setup}.evaluation.scatter_example = {example} "
            f"is outside 0..{true.shape[1] - 1}: {outputs_path} holds {true.shape[1]} "
            "evaluation examples. Set scatter_example to one of them."
        )
    pred = attributions.predict(masks)
    panels.append(
        EvaluationPanel(
            setup, pd.read_csv(summary_path), example, alpha, true[:, example], pred[:, example]
        )
    )
output = snakemake.output
figure_evaluating_coar(
    panels, [output.figure, output.png], snakemake.params.title, snakemake.params.output
)
# The numbers behind the bars: every setup's summary, as CSV and as the report's table.
numbers = pd.concat(
    [panel.summary.assign(setup=panel.setup) for panel in panels], ignore_index=True
)
numbers = numbers[["setup", *(c for c in numbers.columns if c != "setup")]]
with atomic_path(output.table) as tmp:
    numbers.to_csv(tmp, index=False)
write_page(table_page(numbers, output.table), output.table_html)
log.info("wrote %s, %s and %s", output.figure, output.png, output.table)
record_provenance(snakemake)
