# Causal language models (GPT-2, Phi): a setup of kind causal_lm attributes one of the
# config's language_models over one component kind. The model and its evaluation
# stories are made once per language model under lm/NAME/ (generated and trained here,
# or imported from Hugging Face files and TinyStories), then lm_setup writes each setup's
# model and data files, which ablate, fit and evaluate read like any other setup's.


rule lm_corpus:
    output:
        corpus=f"{RESULTS}/lm/{{lm}}/corpus.npz",
        tokenizer=f"{RESULTS}/lm/{{lm}}/tokenizer.json",
    log:
        f"{RESULTS}/logs/lm_corpus/{{lm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lm_corpus/{{lm}}.tsv"
    wildcard_constraints:
        lm=language_models("generated"),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        corpus=lambda wildcards: lm_config(wildcards)["corpus"],
        code=code_of("lm_corpus.py"),
    script:
        "../scripts/lm_corpus.py"


rule lm_train:
    input:
        corpus=f"{RESULTS}/lm/{{lm}}/corpus.npz",
        tokenizer=f"{RESULTS}/lm/{{lm}}/tokenizer.json",
    output:
        model=f"{RESULTS}/lm/{{lm}}/model.pt",
        metrics=f"{RESULTS}/lm/{{lm}}/metrics.json",
    log:
        f"{RESULTS}/logs/lm_train/{{lm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lm_train/{{lm}}.tsv"
    wildcard_constraints:
        lm=language_models("generated"),
    conda:
        "../../envs/coar.yaml"
    threads: 2
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        model=lambda wildcards: lm_config(wildcards)["model"],
        train=lambda wildcards: lm_config(wildcards)["train"],
        max_tokens=lambda wildcards: lm_config(wildcards)["corpus"]["max_tokens"],
        code=code_of("lm_train.py"),
    script:
        "../scripts/lm_train.py"


rule lm_import:
    input:
        config=lambda wildcards: download_path(lm_config(wildcards)["files"]["config"]),
        weights=lambda wildcards: [
            download_path(name) for name in lm_weight_files(wildcards)
        ],
    output:
        model=f"{RESULTS}/lm/{{lm}}/model.pt",
    log:
        f"{RESULTS}/logs/lm_import/{{lm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lm_import/{{lm}}.tsv"
    wildcard_constraints:
        lm=language_models("huggingface"),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: lm_import_memory(input, attempt),
        runtime=per_attempt(10),
    params:
        code=code_of("lm_import.py"),
    script:
        "../scripts/lm_import.py"


rule lm_tinystories:
    input:
        stories=lambda wildcards: download_path(
            lm_config(wildcards)["stories"]["download"]
        ),
        tokenizer=lambda wildcards: download_path(
            lm_config(wildcards)["files"]["tokenizer"]
        ),
    output:
        corpus=f"{RESULTS}/lm/{{lm}}/corpus.npz",
    log:
        f"{RESULTS}/logs/lm_tinystories/{{lm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lm_tinystories/{{lm}}.tsv"
    wildcard_constraints:
        lm=language_models("huggingface"),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        stories=lambda wildcards: lm_config(wildcards)["stories"],
        code=code_of("lm_tinystories.py"),
    script:
        "../scripts/lm_tinystories.py"


rule lm_setup:
    input:
        model=lambda wildcards: f"{RESULTS}/lm/{setup_language_model(wildcards)}/model.pt",
        corpus=lambda wildcards: f"{RESULTS}/lm/{setup_language_model(wildcards)}/corpus.npz",
    output:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    log:
        f"{RESULTS}/logs/lm_setup/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lm_setup/{{setup}}.tsv"
    wildcard_constraints:
        setup=setup_pattern(LM_SETUPS),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(10),
    params:
        components=lambda wildcards: setup_config(wildcards)["components"],
        code=code_of("lm_setup.py"),
    script:
        "../scripts/lm_setup.py"
