# Coar and Coar-Edit as a Snakemake workflow.
# The configuration comes from the default profile (config/config.yaml, the paper)
# or from --configfile (config/mini.yaml, the embedded default).
from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/real_setups.smk"
include: "workflow/rules/clip_setups.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ablate.smk"
include: "workflow/rules/gather.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/lm_common.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/published.smk"
include: "workflow/rules/sample_efficiency.smk"
include: "workflow/rules/edit_common.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        f"{RESULTS}/SUMMARY.md",


# The last thing a successful run prints: its headline numbers and where the figures,
# SUMMARY.md, the logs and the report are (coar_workflow.closing).
onsuccess:
    from snakemake.logging import logger
    from coar_workflow.closing import closing_message

    logger.info(closing_message(RESULTS, workflow.overwrite_configfiles))
