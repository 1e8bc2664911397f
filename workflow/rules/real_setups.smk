# The paper's setups: evaluation sets as FFCV betons, examples files, imported models.
# Setups with a `source` (config) take these rules; mini_digits keeps prepare_digits/train
# (each constrains {setup} to its setups: common.smk).


# ImageNet val (setups B and C) and a few training images per class (Fig. 2): the user's
# class folders (config keys imagenet_val, imagenet_train), checked, then written as betons.
rule check_imagenet:
    output:
        f"{RESULTS}/data/{{imagenet}}.check.json",
    log:
        f"{RESULTS}/logs/check_{{imagenet}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_{{imagenet}}.tsv"
    wildcard_constraints:
        imagenet=IMAGENET_PATTERN,
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(500),
        runtime=per_attempt(10),
    params:
        imagenet=lambda wildcards: config.get(wildcards.imagenet),
        code=code_of("check_imagenet.py"),
    script:
        "../scripts/check_imagenet.py"


rule prepare_imagenet:
    input:
        f"{RESULTS}/data/{{imagenet}}.check.json",
    output:
        f"{RESULTS}/data/{{imagenet}}.beton",
    log:
        f"{RESULTS}/logs/prepare_{{imagenet}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_{{imagenet}}.tsv"
    wildcard_constraints:
        imagenet=IMAGENET_PATTERN,
    conda:
        "../../envs/coar.yaml"
    threads: 8
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
    params:
        imagenet=lambda wildcards: config.get(wildcards.imagenet),
        code=code_of("prepare_imagenet.py"),
    script:
        "../scripts/prepare_imagenet.py"


rule prepare_cifar10_test:
    input:
        lambda wildcards: download_path("cifar-10-python.tar.gz"),
    output:
        f"{RESULTS}/data/cifar10_test.beton",
    log:
        f"{RESULTS}/logs/prepare_cifar10_test.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_cifar10_test.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        split="test",
        code=code_of("prepare_cifar10.py"),
    script:
        "../scripts/prepare_cifar10.py"


# The training images: example sets of the editing experiments (setup A's fig3).
use rule prepare_cifar10_test as prepare_cifar10_train with:
    output:
        f"{RESULTS}/data/cifar10_train.beton",
    log:
        f"{RESULTS}/logs/prepare_cifar10_train.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_cifar10_train.tsv"
    params:
        split="train",
        code=code_of("prepare_cifar10.py"),


rule prepare_examples:
    input:
        unpack(split_betons),
    output:
        f"{RESULTS}/data/{{setup}}.npz",
    log:
        f"{RESULTS}/logs/prepare_examples/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_examples/{{setup}}.tsv"
    wildcard_constraints:
        setup=REAL_SETUP_PATTERN,
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(16000),
        runtime=per_attempt(60),
    params:
        splits=lambda wildcards: setup_config(wildcards)["source"]["splits"],
        code=code_of("prepare_examples.py"),
    script:
        "../scripts/prepare_examples.py"


rule import_model:
    input:
        model_download,
    output:
        f"{RESULTS}/models/{{setup}}.pt",
    log:
        f"{RESULTS}/logs/import_model/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/import_model/{{setup}}.tsv"
    wildcard_constraints:
        setup=REAL_SETUP_PATTERN,
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(10),
    params:
        model=lambda wildcards: setup_config(wildcards)["source"]["model"],
        code=code_of("import_model.py"),
    script:
        "../scripts/import_model.py"
