rule gather:
    input:
        shard_paths,
    output:
        f"{RESULTS}/ablations/{{setup}}/component_dataset.beton",
    log:
        f"{RESULTS}/logs/gather/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gather/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run=training_run,
    script:
        "../scripts/gather.py"
