# The resumable state (checkpoint.pt) is deliberately not an output: Snakemake deletes the
# outputs of interrupted jobs, and the checkpoint must survive to be resumed from.
rule train:
    input:
        prepared_of_run,
    output:
        model=str(PATHS.model("{run}")),
        curves=str(PATHS.curves("{run}")),
        summary=str(PATHS.train_summary("{run}")),
    params:
        settings=run_settings,
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_RUN,
    log:
        str(LOGS / "train" / "{run}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro train --run {wildcards.run} --threads {threads} > {log} 2>&1"
