rule fig1:
    input:
        summaries=lambda wildcards: expand(
            f"{RESULTS}/eval/{{setup}}/summary.csv", setup=figure_setups("fig1")
        ),
        attributions=lambda wildcards: expand(
            f"{RESULTS}/attributions/{{setup}}/coar.pt", setup=figure_setups("fig1")
        ),
        outputs=lambda wildcards: [
            scatter_outputs_path(setup) for setup in figure_setups("fig1")
        ],
    output:
        report(
            f"{RESULTS}/figures/fig1.pdf",
            caption="../report/fig1.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/figures/fig1.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig1.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        setups=lambda wildcards: figure_setups("fig1"),
        scatter_examples=lambda wildcards: [
            SETUPS[s]["evaluation"]["scatter_example"] for s in figure_setups("fig1")
        ],
        code=code_of("fig1.py"),
    script:
        "../scripts/fig1.py"
