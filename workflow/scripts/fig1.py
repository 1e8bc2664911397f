"""Figure 1, "Evaluating Coar"."""

import numpy as np
import pandas as pd

from coar.attributions import Attributions
from coar_replication.plots import EvaluationPanel, figure_evaluating_coar
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

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
figure_evaluating_coar(panels, snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
record_provenance(snakemake)
