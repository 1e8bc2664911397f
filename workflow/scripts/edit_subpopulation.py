"""Coar-Edit, subpopulation robustness (paper 5.3): sweep k, pick it on validation, save."""

import torch

from coar.attributions import Attributions
from coar_replication.edit_experiments import subpopulation_robustness
from coar_workflow.edit_io import SetupSplits, save_experiment
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.edit
data = SetupSplits.of_rule(snakemake)
attributions = Attributions.load(snakemake.input.attributions)
examples_split = data.load(attributions.meta["examples"]["split"])
if examples_split.groups is None:
    raise ValueError(f"{snakemake.input.data}: split of the attributed examples has no groups")
result = subpopulation_robustness(
    data.setup.name,
    data.model,
    data.spec,
    attributions,
    examples_split.groups[attributions.example_ids],
    data.split("val"),
    data.split("test"),
    target_groups=cfg["target_groups"],
    k_max=cfg["k_max"],
    k_step=cfg["k_step"],
    max_accuracy_drop=cfg["max_accuracy_drop"],
)
log.info("chosen k = %d (%s)", result.edit.k, result.edit.criterion)
save_experiment(result, data, snakemake.output, accuracy_key="test_accuracy_after")
record_provenance(snakemake)
