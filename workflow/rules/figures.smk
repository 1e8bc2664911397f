# The figures that evaluate attributions (Fig. 1; the appendix's GPT-2 Fig. I1): one rule
# per figure of EVALUATION_FIGURES (common.smk), named after it, all made the same way.
# Each writes the figure as PDF and PNG (the report shows the PNG) and the numbers behind
# its bars as CSV and as the report's table.


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


def evaluation_figure_output(figure):
    """What the figure's attributions explain, for its footnote: the language models'
    next-token margin or a classifier's margin."""

    def output(wildcards):
        kinds = {SETUPS[s]["kind"] for s in figure_setups(figure)}
        return "causal_lm" if kinds == {"causal_lm"} else "classifier"

    return output


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
            figure=f"{RESULTS}/figures/{figure}.pdf",
            png=report(
                f"{RESULTS}/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category=figure_category(figure),
                labels=result_label("figure"),
            ),
            table=f"{RESULTS}/figures/{figure}.csv",
            table_html=report(
                f"{RESULTS}/figures/{figure}_table.html",
                caption="../report/table.rst",
                category=figure_category(figure),
                labels=result_label("numbers (table)"),
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
            title=config["figures"][figure]["title"],
            output=evaluation_figure_output(figure),
            code=code_of("fig1.py"),
        script:
            "../scripts/fig1.py"
