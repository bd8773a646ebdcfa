# The files each step writes: its declaration (cdrepro.steps, from cdrepro.tables.TABLE_FILES and
# cdrepro.comparison.table.COMPARISON_TABLE_FILES), which DVC's stages are generated from too.
TABLES = list(step_output("tables").values())


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


# The comparisons, each a table from the runs for its target (every run if none is tagged):
# the methods table (compare_methods: every method side by side), the many-clusters table
# (many_clusters: each method at its runs' fewest and most clusters) and the long-tail table
# (long_tail: each method on balanced and long-tailed training sets). One entry each: the step
# (its CLI subcommand is the name with dashes), the target, the caption in workflow/report/.
COMPARISONS = (
    ("methods_table", "compare_methods", "methods_table"),
    ("many_clusters_table", "many_clusters", "many_clusters"),
    ("long_tail_table", "long_tail", "long_tail"),
)

for comparison, target, caption in COMPARISONS:

    rule:
        name:
            comparison
        input:
            metrics=expand(str(PATHS.metrics("{run}")), run=TARGET_RUNS[target]),
            baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(TARGET_RUNS[target])),
        output:
            [
                report(path, caption=f"../report/{caption}.rst", category="Tables")
                for path in step_output(comparison).values()
            ],
        log:
            str(LOGS / f"{comparison}.log"),
        conda:
            "../../environment.yml"
        params:
            sections=step_params(comparison),
            # A rule's shell command is formatted when its job runs, after the loop has moved on:
            # the subcommand is bound here, where each rule is defined.
            command=comparison.replace("_", "-"),
        shell:
            "cdrepro {params.command} > {log} 2>&1"
