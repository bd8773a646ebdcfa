# cdrepro: the CD reproduction workflow. Rules live in workflow/rules/; every step calls the
# cdrepro CLI. The params file is the config: params.yaml by default, or a whole profile via
#   snakemake --cores all reproduce_tables --configfile workflow/configs/paper.yaml
from snakemake.utils import min_version

min_version("9.0")


if not config:

    configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/tracking.smk"


rule reproduce_tables:
    default_target: True
    input:
        rules.tables.output,
