rule prepare_digits:
    output:
        f"{RESULTS}/data/{{setup}}.npz",
    log:
        f"{RESULTS}/logs/prepare_digits/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_digits/{{setup}}.tsv"
    wildcard_constraints:
        setup=setup_pattern(TRAINED_SETUPS),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        data=lambda wildcards: setup_config(wildcards)["data"],
        code=code_of("prepare_digits.py"),
    script:
        "../scripts/prepare_digits.py"
