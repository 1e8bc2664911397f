"""Table of every download's digests; a config snippet pins those that had none."""

import json

import pandas as pd

from coar.atomic import atomic_path
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
rows = []
for name, path in zip(snakemake.params.names, snakemake.input.records, strict=True):
    with open(path) as f:
        record = json.load(f)
    pinned = ",".join(record["verified_against"]) or "none"
    rows.append(dict(name=name, size=record["size"], sha256=record["sha256"], pinned=pinned))
table = pd.DataFrame(rows)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False)
unpinned = table[table["pinned"] == "none"]
if len(unpinned):
    snippet = "\n".join(f"  {r.name}:\n    sha256: {r.sha256}" for r in unpinned.itertuples())
    log.warning(
        "%d files had no pinned digest; add to the downloads block of the config:\n%s",
        len(unpinned),
        snippet,
    )
record_provenance(snakemake)
