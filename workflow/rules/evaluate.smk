rule evaluate:
    input:
        model=rules.train.output.model,
        prepared=prepared_of_run,
    output:
        str(PATHS.metrics("{run}")),
    params:
        evaluate=config["evaluate"],
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_EVAL,
    log:
        str(LOGS / "evaluate" / "{run}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro evaluate --run {wildcards.run} --threads {threads} > {log} 2>&1"
