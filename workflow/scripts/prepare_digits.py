"""Deterministic splits of scikit-learn's digits (and the Coar-Edit variants of them)."""

import numpy as np

from coar.atomic import atomic_path
from coar_replication.edit_data import prepare_digits
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
arrays = prepare_digits(snakemake.params.data)
with atomic_path(snakemake.output[0]) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
for key in arrays:
    if key.startswith("y_"):
        log.info("split %s: %d images", key[2:], len(arrays[key]))
record_provenance(snakemake)
