# whatmatters: which training choices matter most? See README.md.
# This file is the table of contents: config, validation, rules, targets.
from snakemake.utils import min_version, validate

min_version("9.0")


# No `configfile:` directive: Snakemake would deep-merge a --configfile into it. The study is
# the --configfile alone, else config.yaml, read by the package (common.smk): one message
# naming the key and the valid choices, exit before any work; then the design and file names.
include: "workflow/rules/common.smk"


validate(
    config, "workflow/schemas/config.schema.yaml"
)  # the same rules, as a JSON schema


report: first_page()  # the study's answer, then workflow/report/workflow.rst


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        all_targets(),
