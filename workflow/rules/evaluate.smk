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
        mem_mb=data_memory(2000),
        runtime=per_attempt(30),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        masks_per_batch=lambda wildcards: setup_config(wildcards)["ablation"][
            "masks_per_batch"
        ],
        precision=lambda wildcards: setup_config(wildcards)["ablation"]["precision"],
        compile=lambda wildcards: setup_config(wildcards)["ablation"]["compile"],
        training_run=training_run,
        device=config["device"],
        code=code_of("evaluation_outputs.py"),
    script:
        "../scripts/evaluation_outputs.py"


rule baseline:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/attributions/{{setup}}/{{method}}.pt",
    log:
        f"{RESULTS}/logs/baseline/{{setup}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline/{{setup}}/{{method}}.tsv"
    wildcard_constraints:
        method="loo|gp|nc|ii|atp",
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(60),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        masks_per_batch=lambda wildcards: setup_config(wildcards)["ablation"][
            "masks_per_batch"
        ],
        precision=lambda wildcards: setup_config(wildcards)["ablation"]["precision"],
        device=config["device"],
        code=code_of("baseline.py"),
    script:
        "../scripts/baseline.py"


rule evaluate:
    input:
        attributions=lambda wildcards: [
            f"{RESULTS}/attributions/{wildcards.setup}/{method}.pt"
            for method in evaluation_methods(wildcards)
        ],
        outputs=evaluation_output_paths,
        shards=shard_paths,
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
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        methods=evaluation_methods,
        code=code_of("evaluate.py"),
    script:
        "../scripts/evaluate.py"
