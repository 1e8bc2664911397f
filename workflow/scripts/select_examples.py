"""Select an example set's examples once, where the selection depends on the model's
predictions (coar_replication.selections.MODEL_SELECTIONS): its ablation shards and its fit read
the positions recorded here instead of each selecting again on its own device."""

import json

import torch

from coar.atomic import atomic_path
from coar.device import describe, resolve_device
from coar_replication.edit_examples import selection_record
from coar_workflow.jobs import load_setup_of_rule
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
examples = snakemake.params.examples
device = resolve_device(snakemake.params.device)
setup = load_setup_of_rule(
    snakemake, device, examples={"split": examples["split"], "select": "all"}
)
record = selection_record(setup, examples)
log.info(
    "%s on %s: %d of %d examples of split %s",
    examples,
    describe(device),
    len(record["ids"]),
    record["n_split"],
    examples["split"],
)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(record) + "\n")
record_provenance(snakemake)
