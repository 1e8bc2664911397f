"""Download one file, verify its pinned digest and record its digests next to it."""

import json

from coar.atomic import atomic_path
from coar_workflow.download import download
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
entry = snakemake.params.entry
digests = download(
    entry["url"],
    snakemake.output.file,
    sha256=entry.get("sha256"),
    md5=entry.get("md5"),
    sha256_prefix=entry.get("sha256_prefix"),
    retries=snakemake.params.retries,
)
pinned = [key for key in ("sha256", "md5", "sha256_prefix") if entry.get(key)]
record = {
    "url": entry["url"],
    "size": digests.size,
    "sha256": digests.sha256,
    "md5": digests.md5,
    "verified_against": pinned,
}
with atomic_path(snakemake.output.record) as tmp:
    tmp.write_text(json.dumps(record, indent=2) + "\n")
record_provenance(snakemake)
