rule train:
    input:
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        model=f"{RESULTS}/models/{{setup}}.pt",
        metrics=f"{RESULTS}/models/{{setup}}.metrics.json",
    log:
        f"{RESULTS}/logs/train/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{setup}}.tsv"
    wildcard_constraints:
        setup=setup_pattern(TRAINED_SETUPS),
    conda:
        "../../envs/coar.yaml"
    threads: 2
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        model=lambda wildcards: setup_config(wildcards)["model"],
        train=lambda wildcards: setup_config(wildcards)["train"],
        code=code_of("train.py"),
    script:
        "../scripts/train.py"
