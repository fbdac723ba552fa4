# ddpmseg: label-efficient semantic segmentation with DDPM pixel features.
# Run: snakemake --cores all   (see README.md)
import time

from snakemake.utils import min_version

from ddpmseg.stages.runner import job_error_lines, repeat_at_exit

min_version("9.0")

# Job logs changed since the workflow was parsed are this run's: a failed run ends with their
# error lines (onerror below).
PARSED_AT = time.time()


# config.yaml is the default; a --configfile on the command line replaces it (not merged into it).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ddpm.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/augment.smk"
include: "workflow/rules/tta.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/apply.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        rules.make_tables.output,
        rules.make_report_figures.output,
        applied_outputs(),


onerror:
    repeat_at_exit(job_error_lines("logs", since=PARSED_AT))
