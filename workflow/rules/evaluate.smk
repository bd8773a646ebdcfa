rule evaluate:
    input:
        model=rules.train.output.model,
        prepared=prepared_of_run,
    output:
        **step_output("evaluate"),
    params:
        sections=step_params("evaluate"),
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_EVAL,
    log:
        str(LOGS / "evaluate" / "{run}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro evaluate --run {wildcards.run} --threads {threads} > {log} 2>&1"
