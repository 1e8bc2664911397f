"""Check the user's ImageNet val or train folders (layout and size) before preparing them."""

import json

from coar.atomic import atomic_path
from coar_replication.datasets import check_imagenet_set
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
name = snakemake.wildcards.imagenet
summary = check_imagenet_set(name, snakemake.params.imagenet)
log.info("%s OK: %s", name, summary)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
record_provenance(snakemake)
