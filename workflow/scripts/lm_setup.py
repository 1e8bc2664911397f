"""One causal-LM setup's files: its language model with the setup's component kind, and
the evaluation stories (the data file every setup has)."""

import numpy as np

from coar.atomic import atomic_path
from coar.components import component_spec
from coar_replication.checkpoints import save_model
from coar_replication.lm import load_lm
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
components = snakemake.params.components
model, meta = load_lm(snakemake.input.model)
spec = component_spec(model, components)
log.info("%s: %d components of kind %s", snakemake.input.model, len(spec), components)
save_model(model, snakemake.output.model, **{**meta, "components": components})
with np.load(snakemake.input.corpus) as data:
    arrays = {"input_ids": data["eval_input_ids"], "attention_mask": data["eval_attention_mask"]}
log.info("%d evaluation stories of up to %d tokens", *arrays["input_ids"].shape)
with atomic_path(snakemake.output.data) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
record_provenance(snakemake)
