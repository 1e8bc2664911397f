"""Hugging Face files (config.json and the safetensors weights, one file or all shards of a
sharded checkpoint) of GPT-2 or Phi -> our weights-only checkpoint."""

from coar_replication.checkpoints import save_model
from coar_replication.lm import import_hf_causal_lm
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
weights = list(snakemake.input.weights)
model = import_hf_causal_lm(snakemake.input.config, weights)
config = model.config  # GPT2Config maps these names to its n_layer, n_head, n_embd
log.info(
    "%s from %d weights file(s): %d layers, %d heads, width %d, %d parameters",
    type(model).__name__,
    len(weights),
    config.num_hidden_layers,
    config.num_attention_heads,
    config.hidden_size,
    sum(p.numel() for p in model.parameters()),
)
save_model(model, snakemake.output.model, source=[snakemake.input.config, *weights])
record_provenance(snakemake)
