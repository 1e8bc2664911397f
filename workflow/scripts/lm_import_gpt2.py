"""Hugging Face GPT-2 files (config.json, model.safetensors) -> our weights-only checkpoint."""

from coar_replication.checkpoints import save_model
from coar_replication.lm import import_hf_gpt2
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
model = import_hf_gpt2(snakemake.input.config, snakemake.input.weights)
log.info(
    "GPT-2: %d layers, %d heads, width %d, %d parameters",
    model.config.n_layer,
    model.config.n_head,
    model.config.n_embd,
    sum(p.numel() for p in model.parameters()),
)
save_model(model, snakemake.output.model, source=[snakemake.input.config, snakemake.input.weights])
record_provenance(snakemake)
