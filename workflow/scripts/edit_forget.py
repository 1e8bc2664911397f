"""Coar-Edit, forgetting a class (paper 5.2): sweep k, pick it on validation, save the edit."""

import torch

from coar.attributions import Attributions
from coar_replication.edit_experiments import forget_class
from coar_workflow.edit_io import SetupSplits, save_experiment
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.edit
target_class = int(snakemake.wildcards.target_class)
data = SetupSplits.of_rule(snakemake)
attributions = Attributions.load(snakemake.input.attributions)
examples_split = data.load(attributions.meta["examples"]["split"])
labels = examples_split.labels.cpu().numpy()[attributions.example_ids]
result = forget_class(
    data.setup.name,
    data.model,
    data.spec,
    attributions,
    labels,
    data.split("val"),
    data.split("test"),
    target_class=target_class,
    k_max=cfg["k_max"],
    k_step=cfg["k_step"],
    max_target_accuracy=cfg["max_target_accuracy"],
)
log.info("chosen k = %d (%s)", result.edit.k, result.edit.criterion)
save_experiment(result, data, snakemake.output, accuracy_key="test_accuracy_after")
record_provenance(snakemake)
