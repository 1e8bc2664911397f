"""Correlation between true and predicted outputs per alpha_test, for Coar and every baseline."""

import numpy as np

from coar.atomic import atomic_path
from coar.attributions import Attributions
from coar.evaluation import (
    check_fresh_masks,
    evaluate_methods,
    training_mask_keys,
    undefined_report,
)
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.evaluation
training_keys = training_mask_keys(snakemake.input.shards)
for path in snakemake.input.outputs:
    with np.load(path) as data:
        check_fresh_masks(data["masks"], training_keys, source=path)
log.info("evaluation masks checked against %d distinct training masks", len(training_keys))
paths = dict(zip(snakemake.params.methods, snakemake.input.attributions, strict=True))
methods = {method: Attributions.load(path) for method, path in paths.items()}
# NaN or inf in the true outputs or in a method's predictions stops the step (naming the
# file and examples); an example whose outputs or predictions are constant has no
# correlation: counted in n_undefined, and that method's mean at that alpha is NaN.
summary, per_example = evaluate_methods(
    methods,
    list(snakemake.input.outputs),
    n_boot=cfg["n_bootstrap"],
    seed=cfg["seed"],
    sources=paths,
)
log.info("\n%s", summary.to_string(index=False))
for line in undefined_report(summary, per_example):
    log.warning("%s", line)
with atomic_path(snakemake.output.summary) as tmp:
    summary.to_csv(tmp, index=False, float_format="%.6f")
with atomic_path(snakemake.output.per_example) as tmp:
    per_example.to_csv(tmp, index=False, float_format="%.6f")
record_provenance(snakemake)
