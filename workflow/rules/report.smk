TABLES = [f"table{n}.tex" for n in range(2, 11)] + ["table_other.tex", "all.csv", "differences.csv"]
METHOD_TABLES = ["methods.tex", "methods.csv", "methods_differences.csv"]


rule tables:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=TABLE_RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(TABLE_RUNS)),
    output:
        # In the HTML report (snakemake --report) as files to open or download.
        [
            report(str(PATHS.tables_dir() / name), caption="../report/tables.rst", category="Tables")
            for name in TABLES
        ],
    params:
        titles={name: ds.get("title", name) for name, ds in config["datasets"].items()},
    log:
        str(LOGS / "tables.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro tables > {log} 2>&1"


# The methods table: every method side by side, from the runs for compare_methods.
rule methods_table:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=METHOD_RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=datasets_of(METHOD_RUNS)),
    output:
        [
            report(str(PATHS.tables_dir() / name), caption="../report/methods_table.rst", category="Tables")
            for name in METHOD_TABLES
        ],
    params:
        titles={name: ds.get("title", name) for name, ds in config["datasets"].items()},
        variants=config["variants"],
    log:
        str(LOGS / "methods_table.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro methods-table > {log} 2>&1"
