# How many ablations each solver needs: held-out correlation against m (prefixes of the
# component dataset), for the setups listed under config key sample_efficiency.


rule sample_efficiency:
    input:
        beton=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton",
        integrity=f"{RESULTS}/ablations/{{setup}}/component_dataset.beton.integrity.json",
        outputs=lambda wildcards: scatter_outputs_path(wildcards.setup),
    output:
        f"{RESULTS}/eval/{{setup}}/sample_efficiency.csv",
    log:
        f"{RESULTS}/logs/sample_efficiency/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_efficiency/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        study=config.get("sample_efficiency", {}),
        fit=lambda wildcards: setup_config(wildcards)["fit"],
        n_masks=lambda wildcards: setup_config(wildcards)["ablation"]["n_masks"],
        evaluation=lambda wildcards: setup_config(wildcards)["evaluation"],
        device=config["device"],
        code=code_of("sample_efficiency.py"),
    script:
        "../scripts/sample_efficiency.py"


rule sample_efficiency_figure:
    input:
        tables=lambda wildcards: expand(
            f"{RESULTS}/eval/{{setup}}/sample_efficiency.csv",
            setup=sample_efficiency_setups(),
        ),
    output:
        figure=f"{RESULTS}/figures/sample_efficiency.pdf",
        png=report(
            f"{RESULTS}/figures/sample_efficiency.png",
            caption="../report/sample_efficiency.rst",
            category=figure_category("sample_efficiency"),
            labels=result_label("figure"),
        ),
        numbers=f"{RESULTS}/figures/sample_efficiency.csv",
        numbers_html=report(
            f"{RESULTS}/figures/sample_efficiency_table.html",
            caption="../report/table.rst",
            category=figure_category("sample_efficiency"),
            labels=result_label("numbers (table)"),
        ),
        summary=f"{RESULTS}/figures/sample_efficiency_summary.csv",
        summary_html=report(
            f"{RESULTS}/figures/sample_efficiency_summary_table.html",
            caption="../report/sample_efficiency_summary.rst",
            category=figure_category("sample_efficiency"),
            labels=result_label("ablations each solver needs (table)"),
        ),
    log:
        f"{RESULTS}/logs/figures/sample_efficiency.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/sample_efficiency.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        setups=lambda wildcards: sample_efficiency_setups(),
        code=code_of("sample_efficiency_figure.py"),
    script:
        "../scripts/sample_efficiency_figure.py"
