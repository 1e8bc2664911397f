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
        mem_mb=2000,
        runtime=60,
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        ablation=lambda wildcards: setup_config(wildcards)["ablation"],
        run=training_run,
        device=config["device"],
    script:
        "../scripts/ablate.py"
