rule ablate:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/ablations/{{setup}}/shard_{{shard}}.npz",
    log:
        f"{RESULTS}/logs/ablate/{{setup}}/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate/{{setup}}/shard_{{shard}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(60),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        ablation=lambda wildcards: setup_config(wildcards)["ablation"],
        run=training_run,
        device=config["device"],
        code=code_of("ablate.py"),
    script:
        "../scripts/ablate.py"
