rule fit:
    input:
        beton=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton",
        integrity=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton.integrity.json",
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/attributions/{{setup}}/coar.pt",
    log:
        f"{RESULTS}/logs/fit/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 2
    resources:
        mem_mb=data_memory(4000),
        runtime=per_attempt(60),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        fit=lambda wildcards: setup_config(wildcards)["fit"],
        ablation=lambda wildcards: setup_config(wildcards)["ablation"],
        device=config["device"],
        code=code_of("fit.py"),
    script:
        "../scripts/fit.py"
