# The authors' published attributions: converted to our format (NaNs counted and kept),
# then compared with ours (agreement per example; their accuracy under our evaluation).


rule convert_published_attributions:
    input:
        published=lambda wildcards: download_path(
            published_config(wildcards)["download"]
        ),
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/attributions/{{setup}}/published_{{split}}.pt",
    log:
        f"{RESULTS}/logs/convert_published_attributions/{{setup}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/convert_published_attributions/{{setup}}_{{split}}.tsv"
    wildcard_constraints:
        setup=REAL_SETUP_PATTERN,
        split="[a-z]+",
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(16000),
        runtime=per_attempt(30),
    params:
        published=published_config,
        code=code_of("convert_published_attributions.py"),
    script:
        "../scripts/convert_published_attributions.py"


rule compare_published_attributions:
    input:
        ours=f"{RESULTS}/attributions/{{setup}}/coar.pt",
        published=f"{RESULTS}/attributions/{{setup}}/published_test.pt",
        outputs=evaluation_output_paths,
    output:
        summary=f"{RESULTS}/eval/{{setup}}/published_comparison.csv",
        per_example=f"{RESULTS}/eval/{{setup}}/published_per_example.csv",
        figure=f"{RESULTS}/figures/published_{{setup}}.pdf",
        png=report(
            f"{RESULTS}/figures/published_{{setup}}.png",
            caption="../report/published.rst",
            category=lambda wildcards: figure_heading(f"published_{wildcards.setup}"),
            labels=result_label("figure"),
        ),
    log:
        f"{RESULTS}/logs/compare_published_attributions/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare_published_attributions/{{setup}}.tsv"
    wildcard_constraints:
        setup=REAL_SETUP_PATTERN,
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(16000),
        runtime=per_attempt(30),
    params:
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        code=code_of("compare_published_attributions.py"),
    script:
        "../scripts/compare_published_attributions.py"
