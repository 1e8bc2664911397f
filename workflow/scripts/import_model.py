"""Import a published checkpoint into our weights-only format (see coar_replication.checkpoints)."""

from coar_replication.checkpoints import import_checkpoint, save_model
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.model
model = import_checkpoint(snakemake.input[0], cfg)
n_params = sum(p.numel() for p in model.parameters())
log.info("%s (%s, %s): %d parameters", snakemake.input[0], cfg["format"], cfg["size"], n_params)
save_model(
    model,
    snakemake.output[0],
    architecture=cfg["architecture"],
    normalization=cfg["normalization"],
)
record_provenance(snakemake)
