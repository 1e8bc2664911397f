"""A setup's examples file: the decoded images of each split it uses."""

import numpy as np

from coar.atomic import atomic_path
from coar_replication.datasets import read_image_beton, select_every, split_arrays
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
arrays = {}
for split, src in snakemake.params.splits.items():
    data = read_image_beton(
        snakemake.input[split],
        decoder=src.get("decoder", "simple"),
        image_size=src.get("image_size"),
        crop_ratio=src.get("crop_ratio", 1.0),
    )
    ids = select_every(
        len(data["label"]),
        src.get("every", 1),
        src.get("limit"),
        start=src.get("start", 0),
        stop=src.get("stop"),
    )
    arrays.update(split_arrays(split, data, ids))
    log.info(
        "split %s: %d of %d examples from %s, images %s",
        split,
        len(ids),
        len(data["label"]),
        snakemake.input[split],
        arrays[f"x_{split}"].shape[1:],
    )
with atomic_path(snakemake.output[0]) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
record_provenance(snakemake)
