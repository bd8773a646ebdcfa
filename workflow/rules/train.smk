# The resumable state (checkpoint.pt) is deliberately not an output: Snakemake deletes the
# outputs of interrupted jobs, and the checkpoint must survive to be resumed from.
rule train:
    input:
        prepared_of_run,
    output:
        **step_output("train"),
    log:
        str(LOGS / "train" / "{run}.log"),
    conda:
        "../../environment.yml"
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_RUN,
        gpu_slot=SLOTS_PER_RUN,
    params:
        # The run's resolved settings: a function of exactly the sections it reads (datasets.<its
        # dataset>, model, methods, variants.<its variant>, train), finer than the sections
        # themselves, so that a change nothing of this run reads (another run's variant, a
        # dataset's title) re-runs nothing.
        settings=run_settings,
    shell:
        "cdrepro train --run {wildcards.run} --threads {threads} > {log} 2>&1"
