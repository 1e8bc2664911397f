"""Held-out correlation against the number of ablations m, per solver, for one setup."""

import torch

from coar.atomic import atomic_path
from coar.device import resolve_device
from coar_replication.sample_efficiency import m_grid, sample_efficiency
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
study = snakemake.params.study
fit_config = {**snakemake.params.fit, **study.get("fit", {})}
table = sample_efficiency(
    snakemake.input.beton,
    snakemake.input.outputs,
    m_values=m_grid(study["fractions"], snakemake.params.n_masks),
    solvers=study["solvers"],
    fit_config=fit_config,
    n_bootstrap=snakemake.params.evaluation["n_bootstrap"],
    seed=snakemake.params.evaluation["seed"],
    device=resolve_device(snakemake.params.device),
)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, index=False)
log.info("wrote %s", snakemake.output[0])
record_provenance(snakemake)
