# The figures that evaluate attributions (Fig. 1; the appendix's GPT-2 Fig. I1): one rule
# per figure of EVALUATION_FIGURES (common.smk), named after it, all made the same way.


def evaluation_figure_files(figure, pattern):
    return lambda wildcards: expand(pattern, setup=figure_setups(figure))


def evaluation_figure_scatter(figure):
    return lambda wildcards: [scatter_outputs_path(s) for s in figure_setups(figure)]


def evaluation_figure_setups(figure):
    return lambda wildcards: figure_setups(figure)


def evaluation_figure_examples(figure):
    return lambda wildcards: [
        SETUPS[s]["evaluation"]["scatter_example"] for s in figure_setups(figure)
    ]


for figure in EVALUATION_FIGURES:

    rule:
        name:
            figure
        input:
            summaries=evaluation_figure_files(
                figure, f"{RESULTS}/eval/{{setup}}/summary.csv"
            ),
            attributions=evaluation_figure_files(
                figure, f"{RESULTS}/attributions/{{setup}}/coar.pt"
            ),
            outputs=evaluation_figure_scatter(figure),
        output:
            report(
                f"{RESULTS}/figures/{figure}.pdf",
                caption=f"../report/{figure}.rst",
                category="Figures",
            ),
        log:
            f"{RESULTS}/logs/figures/{figure}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{figure}.tsv"
        conda:
            "../../envs/coar.yaml"
        threads: 1
        resources:
            mem_mb=per_attempt(2000),
            runtime=per_attempt(10),
        params:
            setups=evaluation_figure_setups(figure),
            scatter_examples=evaluation_figure_examples(figure),
            code=code_of("fig1.py"),
        script:
            "../scripts/fig1.py"
