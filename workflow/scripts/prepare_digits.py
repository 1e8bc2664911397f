"""Deterministic train/test split of scikit-learn's digits."""

import numpy as np

from coar.atomic import atomic_path
from coar.data import digits_split
from coar.logs import log_to
from coar.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.data
arrays = digits_split(cfg["test_fraction"], cfg["split_seed"])
with atomic_path(snakemake.output[0]) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
log.info("train %d images, test %d images", len(arrays["y_train"]), len(arrays["y_test"]))
record_provenance(snakemake)
