"""Coar-Edit against a backdoor trigger (paper 5.4) or typographic attacks (5.5)."""

import torch

from coar.attributions import Attributions
from coar_replication.edit_experiments import remove_backdoor
from coar_workflow.edit_io import SetupSplits, save_experiment
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.edit
suffix = snakemake.params.suffix  # split suffix of the attacked copies: triggered / attacked
data = SetupSplits.of_rule(snakemake)
result = remove_backdoor(
    data.setup.name,
    data.model,
    data.spec,
    Attributions.load(snakemake.input.triggered),
    Attributions.load(snakemake.input.clean),
    data.split("val"),
    data.split(f"val_{suffix}"),
    data.split("test"),
    data.split(f"test_{suffix}"),
    target_class=snakemake.params.target_class,
    k_max=cfg["k_max"],
    k_step=cfg["k_step"],
    max_clean_drop=cfg["max_clean_drop"],
    experiment=snakemake.params.experiment,
)
log.info("chosen k = %d (%s)", result.edit.k, result.edit.criterion)
save_experiment(result, data, snakemake.output, accuracy_key="test_clean_accuracy_after")
record_provenance(snakemake)
