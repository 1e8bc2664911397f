# Each figure's provenance (`coar provenance`) as text, and as a page the report shows.
rule provenance:
    input:
        f"{RESULTS}/figures/{{figure}}.pdf",
    output:
        text=f"{RESULTS}/provenance/{{figure}}.txt",
        page=report(
            f"{RESULTS}/provenance/{{figure}}.html",
            caption="../report/provenance.rst",
            category=figure_category(),
            labels=result_label("provenance"),
        ),
    log:
        f"{RESULTS}/logs/provenance/{{figure}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/provenance/{{figure}}.tsv"
    localrule: True
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        code=code_of("provenance.py"),
    script:
        "../scripts/provenance.py"
