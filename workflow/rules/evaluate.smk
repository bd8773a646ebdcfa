rule evaluate:
    input:
        model=rules.train.output.model,
        prepared=prepared_of_run,
        split=split_of_run,
    output:
        **step_output("evaluate"),
    log:
        str(LOGS / "evaluate" / "{run}.log"),
    conda:
        "../../environment.yml"
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_EVAL,
        gpu_slot=SLOTS_PER_EVAL,
    params:
        sections=step_params("evaluate"),
    shell:
        "cdrepro evaluate --run {wildcards.run} --threads {threads} > {log} 2>&1"
