"""Coar-Edit, fixing individual errors (paper 5.1): one edit per misclassified test example
(of the split that plays the test role)."""

import numpy as np
import torch

from coar.attributions import Attributions
from coar.serialization import save_torch
from coar_replication.edit_experiments import fix_errors
from coar_workflow.edit_io import SetupSplits, log_summary, write_csv, write_json
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.edit
data = SetupSplits.of_rule(snakemake)
errors = Attributions.load(snakemake.input.errors)
# The errors' positions index the split that plays the test role (edits.errors.splits).
test_split = data.name_of("test")
if errors.meta["examples"]["split"] != test_split:
    raise ValueError(
        f"{snakemake.input.errors}: the errors to fix are examples of split "
        f"{errors.meta['examples']['split']!r}, but the experiment's test split is "
        f"{test_split!r} (setups.{data.setup.name}.edits.errors.splits.test)"
    )
table, edits = fix_errors(
    data.setup.name,
    data.model,
    data.spec,
    errors,
    Attributions.load(snakemake.input.reference),
    data.split("train"),
    data.split("val"),
    data.split("test"),
    k_max=cfg["k_max"],
    max_val_drop=cfg["max_val_drop"],
    max_tries=cfg.get("max_tries", 5),
)
fixed = table[table.fixed]
summary = {
    "setup": data.setup.name,
    "n_errors": len(table),
    "n_fixed": len(fixed),
    "fraction_fixed": len(fixed) / len(table),
    "median_k": float(np.median(fixed.k)) if len(fixed) else None,
    "median_train_change": float(np.median(fixed.train_change)) if len(fixed) else None,
    "median_test_change": float(np.median(fixed.test_change)) if len(fixed) else None,
    "median_val_change": float(np.median(fixed.val_change)) if len(fixed) else None,
    "n_components": len(data.spec),
}
write_csv(table, snakemake.output.table)
write_json(summary, snakemake.output.summary)
log_summary(summary, "errors", snakemake.output.summary)
# One edit per error; coar.edit.apply_edit(model, spec, record["ablated"]) rebuilds each one.
save_torch({"edits": [edit.record() for edit in edits], "summary": summary}, snakemake.output.edits)
record_provenance(snakemake)
