# Coar-Edit (paper Section 5): attributions of example sets, edit experiments, figures.
# Example sets (setups.<setup>.examples) reuse the ablate -> gather -> fit rules under
# ablations/<setup>/<set>/ and attributions/<setup>/<set>/; experiments (setups.<setup>.edits)
# write edits/<setup>/<experiment>/; the figure numbers come from the config's figures table.


# A selection that depends on the model's predictions (select: misclassified) could come
# out differently on another device (TF32 on a GPU, float32 on the CPU): it is made once,
# here, and the set's shards and fit read it (their input `ids`).
rule select_examples:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
    output:
        f"{RESULTS}/examples/{{setup}}/{{examples}}.json",
    log:
        f"{RESULTS}/logs/select_examples/{{setup}}/{{examples}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_examples/{{setup}}/{{examples}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(4000),
        runtime=per_attempt(30),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        examples=example_selection,
        device=config["device"],
        code=code_of("select_examples.py"),
    script:
        "../scripts/select_examples.py"


use rule ablate as ablate_examples with:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        ids=selected_examples,
    output:
        f"{RESULTS}/ablations/{{setup}}/{{examples}}/shard_{{shard}}.npz",
    log:
        f"{RESULTS}/logs/ablate/{{setup}}/{{examples}}/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate/{{setup}}/{{examples}}/shard_{{shard}}.tsv"
    params:
        ablation=example_set_ablation,
        run=example_set_run,
        examples=example_selection,


use rule gather as gather_examples with:
    input:
        example_shard_paths,
    output:
        beton=f"{RESULTS}/ablations/{{setup}}/{{examples}}/component_dataset.beton",
        integrity=f"{RESULTS}/ablations/{{setup}}/{{examples}}/component_dataset.beton.integrity.json",
    log:
        f"{RESULTS}/logs/gather/{{setup}}/{{examples}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gather/{{setup}}/{{examples}}.tsv"
    params:
        run=example_set_run,


use rule fit as fit_examples with:
    input:
        beton=f"{RESULTS}/ablations/{{setup}}/{{examples}}/component_dataset.beton",
        integrity=f"{RESULTS}/ablations/{{setup}}/{{examples}}/component_dataset.beton.integrity.json",
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        ids=selected_examples,
    output:
        f"{RESULTS}/attributions/{{setup}}/{{examples}}/coar.pt",
    log:
        f"{RESULTS}/logs/fit/{{setup}}/{{examples}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{setup}}/{{examples}}.tsv"
    params:
        ablation=example_set_ablation,
        examples=example_selection,


rule edit_forget:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        attributions=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "forget")["examples"]
        ),
    output:
        sweep=f"{RESULTS}/edits/{{setup}}/forget/class{{target_class}}/sweep.csv",
        summary=f"{RESULTS}/edits/{{setup}}/forget/class{{target_class}}/summary.json",
        model=f"{RESULTS}/edits/{{setup}}/forget/class{{target_class}}/edited_model.pt",
    log:
        f"{RESULTS}/logs/edit_forget/{{setup}}/class{{target_class}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edit_forget/{{setup}}/class{{target_class}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(30),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        edit=lambda wildcards: edit_config(wildcards.setup, "forget"),
        device=config["device"],
        code=code_of("edit_forget.py"),
    script:
        "../scripts/edit_forget.py"


rule edit_errors:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        errors=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "errors")["examples"]
        ),
        reference=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "errors")["reference"]
        ),
    output:
        table=f"{RESULTS}/edits/{{setup}}/errors/per_example.csv",
        summary=f"{RESULTS}/edits/{{setup}}/errors/summary.json",
        edits=f"{RESULTS}/edits/{{setup}}/errors/edits.pt",
    log:
        f"{RESULTS}/logs/edit_errors/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edit_errors/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(60),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        edit=lambda wildcards: edit_config(wildcards.setup, "errors"),
        device=config["device"],
        code=code_of("edit_errors.py"),
    script:
        "../scripts/edit_errors.py"


rule edit_subpopulation:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        attributions=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "subpopulation")["examples"]
        ),
    output:
        sweep=f"{RESULTS}/edits/{{setup}}/subpopulation/sweep.csv",
        summary=f"{RESULTS}/edits/{{setup}}/subpopulation/summary.json",
        model=f"{RESULTS}/edits/{{setup}}/subpopulation/edited_model.pt",
    log:
        f"{RESULTS}/logs/edit_subpopulation/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edit_subpopulation/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(30),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        edit=lambda wildcards: edit_config(wildcards.setup, "subpopulation"),
        device=config["device"],
        code=code_of("edit_subpopulation.py"),
    script:
        "../scripts/edit_subpopulation.py"


rule edit_backdoor:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        triggered=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "backdoor")["triggered"]
        ),
        clean=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "backdoor")["clean"]
        ),
    output:
        sweep=f"{RESULTS}/edits/{{setup}}/backdoor/sweep.csv",
        summary=f"{RESULTS}/edits/{{setup}}/backdoor/summary.json",
        model=f"{RESULTS}/edits/{{setup}}/backdoor/edited_model.pt",
    log:
        f"{RESULTS}/logs/edit_backdoor/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edit_backdoor/{{setup}}.tsv"
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=data_memory(2000),
        runtime=per_attempt(30),
    params:
        kind=lambda wildcards: setup_config(wildcards)["kind"],
        edit=lambda wildcards: edit_config(wildcards.setup, "backdoor"),
        experiment="backdoor",
        suffix="triggered",
        target_class=backdoor_target_class,
        device=config["device"],
        code=code_of("edit_backdoor.py"),
    script:
        "../scripts/edit_backdoor.py"


use rule edit_backdoor as edit_typographic with:
    input:
        model=f"{RESULTS}/models/{{setup}}.pt",
        data=f"{RESULTS}/data/{{setup}}.npz",
        triggered=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "typographic")["attacked"]
        ),
        clean=lambda wildcards: example_attributions(
            wildcards.setup, edit_config(wildcards.setup, "typographic")["clean"]
        ),
    output:
        sweep=f"{RESULTS}/edits/{{setup}}/typographic/sweep.csv",
        summary=f"{RESULTS}/edits/{{setup}}/typographic/summary.json",
        model=f"{RESULTS}/edits/{{setup}}/typographic/edited_model.pt",
    log:
        f"{RESULTS}/logs/edit_typographic/{{setup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edit_typographic/{{setup}}.tsv"
    params:
        edit=lambda wildcards: edit_config(wildcards.setup, "typographic"),
        experiment="typographic",
        suffix="attacked",
        target_class=None,


rule figure_errors:
    input:
        experiment_outputs("errors", "per_example.csv", "summary.json"),
    output:
        figure=f"{RESULTS}/figures/{{figure}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/edit_errors.rst",
            category=figure_category(),
            labels=result_label("figure"),
        ),
        table=f"{RESULTS}/figures/{{figure}}.csv",
        table_html=report(
            f"{RESULTS}/figures/{{figure}}_table.html",
            caption="../report/table.rst",
            category=figure_category(),
            labels=result_label("numbers (table)"),
        ),
    log:
        f"{RESULTS}/logs/figures/{{figure}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/{{figure}}.tsv"
    wildcard_constraints:
        figure=figure_of("errors"),
    conda:
        "../../envs/coar.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        experiment="errors",
        title=lambda wildcards: config["figures"][wildcards.figure]["title"],
        group_names=lambda wildcards: subpopulation_group_names(wildcards.figure),
        code=code_of("edit_figure.py"),
    script:
        "../scripts/edit_figure.py"


use rule figure_errors as figure_forget with:
    input:
        forget_summaries,
    output:
        figure=f"{RESULTS}/figures/{{figure}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/edit_forget.rst",
            category=figure_category(),
            labels=result_label("figure"),
        ),
        table=f"{RESULTS}/figures/{{figure}}.csv",
        table_html=report(
            f"{RESULTS}/figures/{{figure}}_table.html",
            caption="../report/table.rst",
            category=figure_category(),
            labels=result_label("numbers (table)"),
        ),
    wildcard_constraints:
        figure=figure_of("forget"),
    params:
        experiment="forget",


use rule figure_errors as figure_subpopulation with:
    input:
        experiment_outputs("subpopulation", "sweep.csv", "summary.json"),
    output:
        figure=f"{RESULTS}/figures/{{figure}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/edit_subpopulation.rst",
            category=figure_category(),
            labels=result_label("figure"),
        ),
        table=f"{RESULTS}/figures/{{figure}}.csv",
        table_html=report(
            f"{RESULTS}/figures/{{figure}}_table.html",
            caption="../report/table.rst",
            category=figure_category(),
            labels=result_label("numbers (table)"),
        ),
    wildcard_constraints:
        figure=figure_of("subpopulation"),
    params:
        experiment="subpopulation",


use rule figure_errors as figure_backdoor with:
    input:
        experiment_outputs("backdoor", "sweep.csv", "summary.json"),
    output:
        figure=f"{RESULTS}/figures/{{figure}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/edit_backdoor.rst",
            category=figure_category(),
            labels=result_label("figure"),
        ),
        table=f"{RESULTS}/figures/{{figure}}.csv",
        table_html=report(
            f"{RESULTS}/figures/{{figure}}_table.html",
            caption="../report/table.rst",
            category=figure_category(),
            labels=result_label("numbers (table)"),
        ),
    wildcard_constraints:
        figure=figure_of("backdoor"),
    params:
        experiment="backdoor",


use rule figure_errors as figure_typographic with:
    input:
        experiment_outputs("typographic", "sweep.csv", "summary.json"),
    output:
        figure=f"{RESULTS}/figures/{{figure}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/edit_typographic.rst",
            category=figure_category(),
            labels=result_label("figure"),
        ),
        table=f"{RESULTS}/figures/{{figure}}.csv",
        table_html=report(
            f"{RESULTS}/figures/{{figure}}_table.html",
            caption="../report/table.rst",
            category=figure_category(),
            labels=result_label("numbers (table)"),
        ),
    wildcard_constraints:
        figure=figure_of("typographic"),
    params:
        experiment="typographic",
