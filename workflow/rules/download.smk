# One download rule per file in config key `downloads`: resumable, retried, atomic, and
# checked twice against the pinned digest (by coar_workflow.download before the file gets its
# name, and by Snakemake's ensure() afterwards).
for _name, _entry in DOWNLOADS.items():

    rule:
        name:
            download_rule_name(_name)
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
            mem_mb=per_attempt(500),
            runtime=per_attempt(240),
        params:
            entry=_entry,
            retries=5,
            code=code_of("download.py"),
        script:
            "../scripts/download.py"


# `snakemake all_downloads`: fetch every file; resources/digests.tsv lists each file's
# digests and which were pinned, with a config snippet for those that were not.
rule all_downloads:
    input:
        files=[f"{DOWNLOADS_DIR}/{name}" for name in DOWNLOADS],
        records=[f"{DOWNLOADS_DIR}/{name}.json" for name in DOWNLOADS],
    output:
        f"{DOWNLOADS_DIR}/digests.tsv",
    log:
        f"{DOWNLOADS_DIR}/logs/digests.log",
    benchmark:
        f"{DOWNLOADS_DIR}/benchmarks/digests.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(500),
        runtime=per_attempt(5),
    params:
        names=list(DOWNLOADS),
        code=code_of("download_digests.py"),
    script:
        "../scripts/download_digests.py"
