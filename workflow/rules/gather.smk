rule gather:
    input:
        shard_paths,
    output:
        beton=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton",
        integrity=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton.integrity.json",
    log:
        f"{RESULTS}/logs/gather/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gather/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        run=training_run,
        code=code_of("gather.py"),
    script:
        "../scripts/gather.py"
