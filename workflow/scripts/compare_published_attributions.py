"""Our attributions vs the authors': agreement and held-out accuracy (table + figure)."""

from coar.atomic import atomic_path
from coar.attributions import Attributions
from coar_replication.published import compare_published, figure_published_comparison
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.evaluation
summary, per_example = compare_published(
    Attributions.load(snakemake.input.ours),
    Attributions.load(snakemake.input.published),
    list(snakemake.input.outputs),
    n_boot=cfg["n_bootstrap"],
    seed=cfg["seed"],
)
log.info("\n%s", summary.to_string(index=False))
with atomic_path(snakemake.output.summary) as tmp:
    summary.to_csv(tmp, index=False, float_format="%.6f")
with atomic_path(snakemake.output.per_example) as tmp:
    per_example.to_csv(tmp, index=False, float_format="%.6f")
figure_published_comparison(
    snakemake.wildcards.setup,
    summary,
    per_example,
    [snakemake.output.figure, snakemake.output.png],
)
record_provenance(snakemake)
