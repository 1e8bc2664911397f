# One download rule per file in config key `downloads`: resumable, retried, atomic, and
# checked twice against the pinned digest (by coar.download before the file gets its
# name, and by Snakemake's ensure() afterwards).
import re

DOWNLOADS = config.get("downloads", {})
DOWNLOADS_DIR = config.get("downloads_dir", "resources").rstrip("/")


def download_path(name):
    if name not in DOWNLOADS:
        raise ValueError(
            f"file {name!r} is used by a setup but not listed under config key downloads "
            f"(listed: {sorted(DOWNLOADS)})"
        )
    return f"{DOWNLOADS_DIR}/{name}"


def pinned_checksum(entry):
    """Snakemake's ensure() takes one full digest: sha256 if pinned, else md5."""
    if entry.get("sha256"):
        return {"sha256": entry["sha256"]}
    if entry.get("md5"):
        return {"md5": entry["md5"]}
    return {}


for _name, _entry in DOWNLOADS.items():

    rule:
        name:
            "download_" + re.sub(r"\W", "_", _name)
        output:
            file=ensure(
                f"{DOWNLOADS_DIR}/{_name}", non_empty=True, **pinned_checksum(_entry)
            ),
            record=f"{DOWNLOADS_DIR}/{_name}.json",
        log:
            f"{DOWNLOADS_DIR}/logs/{_name}.log",
        benchmark:
            f"{DOWNLOADS_DIR}/benchmarks/{_name}.tsv"
        conda:
            "../../envs/coar.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=240,
        params:
            entry=_entry,
            retries=5,
        script:
            "../scripts/download.py"
