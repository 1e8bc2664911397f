"""A zero-shot CLIP setup against typographic attacks (paper 5.5): the classifier's
description and CIFAR-10 images upscaled to CLIP's input, with and without the name of a
wrong class written on them (coar_replication.edit_clip.typographic_setup)."""

import numpy as np

from coar.atomic import atomic_path
from coar.serialization import save_torch
from coar_replication.datasets import read_cifar10, select_every
from coar_replication.edit_clip import PROMPT, typographic_setup
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.clip
images, labels = read_cifar10(snakemake.input.images, cfg["cifar10"]["split"])
splits = {
    name: select_every(
        len(labels),
        part.get("every", 1),
        part.get("limit"),
        start=part.get("start", 0),
        stop=part.get("stop"),
    )
    for name, part in cfg["splits"].items()
}
description, arrays = typographic_setup(
    snakemake.input.checkpoint,
    images,
    labels,
    splits,
    cfg["class_names"],
    seed=cfg["attack_seed"],
    prompt=cfg.get("prompt", PROMPT),
)
for name, ids in splits.items():
    log.info(
        "split %s (and %s_attacked): %d CIFAR-10 %s images from position %d, as %s",
        name,
        name,
        len(ids),
        cfg["cifar10"]["split"],
        ids[0],
        arrays[f"x_{name}"].shape[1:],
    )
save_torch(description, snakemake.output.model)
with atomic_path(snakemake.output.data) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
log.info("wrote %s (%s) and %s", snakemake.output.model, description, snakemake.output.data)
record_provenance(snakemake)
