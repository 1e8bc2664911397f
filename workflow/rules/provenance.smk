rule provenance:
    input:
        f"{RESULTS}/figures/{{figure}}.pdf",
    output:
        report(
            f"{RESULTS}/provenance/{{figure}}.txt",
            caption="../report/provenance.rst",
            category="Provenance",
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
