"""Check the user's ImageNet validation set (layout and size) before preparing it."""

import json

from coar.atomic import atomic_path
from coar.datasets import check_imagenet_val
from coar.logs import log_to
from coar.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.imagenet
if cfg is None:
    raise ValueError(
        "config key imagenet_val is not set; setups using ImageNet need its path "
        "(see config/config.yaml)"
    )
summary = check_imagenet_val(cfg["path"], cfg["n_classes"], cfg["images_per_class"])
log.info("ImageNet val OK: %s", summary)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
record_provenance(snakemake)
