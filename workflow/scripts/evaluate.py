"""Correlation between true and predicted outputs per alpha_test: summary.csv."""

from coar.atomic import atomic_path
from coar.attributions import Attributions
from coar.evaluate import evaluate_methods
from coar.logs import log_to
from coar.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.evaluation
methods = {"coar": Attributions.load(snakemake.input.attributions)}
summary, per_example = evaluate_methods(
    methods, list(snakemake.input.outputs), n_boot=cfg["n_bootstrap"], seed=cfg["seed"]
)
log.info("\n%s", summary.to_string(index=False))
with atomic_path(snakemake.output.summary) as tmp:
    summary.to_csv(tmp, index=False, float_format="%.6f")
with atomic_path(snakemake.output.per_example) as tmp:
    per_example.to_csv(tmp, index=False, float_format="%.6f")
record_provenance(snakemake)
