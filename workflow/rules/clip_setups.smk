# Zero-shot CLIP setups (kind clip_zero_shot; typographic attacks, paper 5.5): the model file
# is a small description of the classifier (class names, prompt, the downloaded OpenAI
# checkpoint it loads), the examples file holds clean and attacked copies of the images.


rule typographic_setup:
    input:
        checkpoint=lambda wildcards: download_path(clip_config(wildcards)["checkpoint"]),
        images=lambda wildcards: download_path(
            clip_config(wildcards)["cifar10"]["download"]
        ),
    output:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    log:
        f"{RESULTS}/logs/typographic_setup/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/typographic_setup/{{setup}}.tsv"
    wildcard_constraints:
        setup=setup_pattern(CLIP_SETUPS),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(30),
    params:
        clip=clip_config,
        code=code_of("typographic_setup.py"),
    script:
        "../scripts/typographic_setup.py"
