"""Convert the authors' datamodels.pt to our attribution format (raw mask units)."""

import numpy as np

from coar.attributions import from_original_datamodels
from coar_replication.checkpoints import load_checkpoint
from coar_replication.real_setups import components_of
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.published
split = snakemake.wildcards.split
model, info = load_checkpoint(snakemake.input.model)
with np.load(snakemake.input.data) as data:
    n_examples = len(data[f"y_{split}"])
attributions = from_original_datamodels(
    snakemake.input.published,
    component_names=components_of(model, info["architecture"]).names(),
    example_ids=list(range(n_examples)),
    alpha=cfg["alpha"],
)
attributions.meta.update(setup=snakemake.wildcards.setup, split=split, method="published")
log.info(
    "%s: %d components x %d examples, %d NaN entries in %d examples",
    snakemake.input.published,
    *attributions.weight.shape,
    attributions.meta["n_nan"],
    len(attributions.meta["nan_examples"]),
)
attributions.save(snakemake.output[0])
record_provenance(snakemake)
