# A run's headline numbers in one file, {results_dir}/SUMMARY.md (coar_workflow.summary):
# Fig. 1 and the GPT-2 figure per setup, the sample-efficiency summary and every Coar-Edit
# experiment's before/after numbers with its chosen k. The README's table is made from it.
import os

from coar_workflow.summary import summary_inputs


rule summary:
    input:
        lambda wildcards: summary_inputs(config, RESULTS),
    output:
        f"{RESULTS}/SUMMARY.md",
    log:
        f"{RESULTS}/logs/summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/summary.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        figures=config["figures"],
        results_dir=lambda wildcards, output: os.path.dirname(output[0]),
        code=code_of("summary.py"),
    script:
        "../scripts/summary.py"
