# The files each step writes: its declaration (cdrepro.steps, from cdrepro.tables.TABLE_FILES and
# cdrepro.comparison.table.COMPARISON_TABLE_FILES), which DVC's stages are generated from too.
TABLES = list(step_output("tables").values())
COMPARISON_TABLES = list(step_output("methods_table").values())
CLUSTERS_TABLES = list(step_output("many_clusters_table").values())


rule tables:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=TABLE_RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(TABLE_RUNS)),
    output:
        # In the HTML report (snakemake --report) as files to open or download.
        [report(path, caption="../report/tables.rst", category="Tables") for path in TABLES],
    log:
        str(LOGS / "tables.log"),
    conda:
        "../../environment.yml"
    params:
        sections=step_params("tables"),
    shell:
        "cdrepro tables > {log} 2>&1"


# The methods table (the methods comparison's): every method side by side, from the runs for
# compare_methods.
rule methods_table:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=COMPARISON_RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(COMPARISON_RUNS)),
    output:
        [report(path, caption="../report/methods_table.rst", category="Tables") for path in COMPARISON_TABLES],
    log:
        str(LOGS / "methods_table.log"),
    conda:
        "../../environment.yml"
    params:
        sections=step_params("methods_table"),
    shell:
        "cdrepro methods-table > {log} 2>&1"


# The many-clusters table: each method at its runs' fewest and most clusters, from the runs for
# many_clusters.
rule many_clusters_table:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=CLUSTERS_RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(CLUSTERS_RUNS)),
    output:
        [report(path, caption="../report/many_clusters.rst", category="Tables") for path in CLUSTERS_TABLES],
    log:
        str(LOGS / "many_clusters_table.log"),
    conda:
        "../../environment.yml"
    params:
        sections=step_params("many_clusters_table"),
    shell:
        "cdrepro many-clusters-table > {log} 2>&1"
