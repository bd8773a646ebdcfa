TABLES = [f"table{n}.tex" for n in range(2, 11)] + ["table_other.tex", "all.csv"]


rule tables:
    input:
        metrics=expand(str(PATHS.metrics("{run}")), run=RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=DATASETS),
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
