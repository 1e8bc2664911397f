rule evaluation_outputs:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/eval/{{setup}}/true_outputs_alpha{{alpha}}.npz",
    log:
        f"{RESULTS}/logs/evaluation_outputs/{{setup}}/alpha{{alpha}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluation_outputs/{{setup}}/alpha{{alpha}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        masks_per_batch=lambda wildcards: setup_config(wildcards)["ablation"][
            "masks_per_batch"
        ],
        precision=lambda wildcards: setup_config(wildcards)["ablation"]["precision"],
        compile=lambda wildcards: setup_config(wildcards)["ablation"]["compile"],
        device=config["device"],
    script:
        "../scripts/evaluation_outputs.py"


rule evaluate:
    input:
        attributions=f"{RESULTS}/attributions/{{setup}}/coar.pt",
        outputs=evaluation_output_paths,
    output:
        summary=f"{RESULTS}/eval/{{setup}}/summary.csv",
        per_example=f"{RESULTS}/eval/{{setup}}/per_example.csv",
    log:
        f"{RESULTS}/logs/evaluate/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
    script:
        "../scripts/evaluate.py"
