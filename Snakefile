# cdrepro: the CD reproduction workflow. Rules live in workflow/rules/; every step calls the
# cdrepro CLI. The params file is the config: params.yaml by default, or a whole profile via
#   snakemake --cores all reproduce_tables --configfile workflow/configs/paper.yaml
# Targets: `all` (the default: the tables, the methods table and the figures),
# `reproduce_tables` (the paper's tables), `compare_methods` (the methods table),
# `many_clusters` (each method at K = 100 against K = 20) or `long_tail` (each method on
# balanced and long-tailed CIFAR-10).
from snakemake.utils import min_version

min_version("9.0")


# params.yaml only when no --configfile is given: a file given that holds nothing (`{}`) is an
# error (common.smk), not a silent run of the embedded profile.
if not workflow.configfiles:

    configfile: "params.yaml"


include: "workflow/rules/common.smk"


# Up to GPUs x runs_per_gpu jobs on this machine's GPUs at once, each in a slot it takes
# itself (docs/cluster.md, "One machine"); unless --resources gives gpu_slot, and only where
# jobs run here (a cluster's jobs are the scheduler's to place).
if workflow.is_main_process and workflow.local_exec and "gpu_slot" not in workflow.global_resources:
    workflow.register_resource("gpu_slot", GPU_SLOTS)


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/figures.smk"


# snakemake --report report.html: it opens on what ran, the methods table and the key figures,
# the params file one click away (workflow/report/workflow.rst, whose cdrepro-* reST directives
# this import registers); then the tables and the figures, captioned, in its menu.
import cdrepro.report_page


report: "workflow/report/workflow.rst"


# Everything: the tables, then the figures (make run). The tables alone are quicker to get.
rule all:
    default_target: True
    input:
        rules.tables.output,
        rules.methods_table.output,
        rules.many_clusters_table.output,
        rules.long_tail_table.output,
        rules.figures.output,
        expand(rules.tsne.output, run=RUNS),


rule reproduce_tables:
    input:
        rules.tables.output,


rule compare_methods:
    input:
        rules.methods_table.output,


rule many_clusters:
    input:
        rules.many_clusters_table.output,


rule long_tail:
    input:
        rules.long_tail_table.output,
