rule prepare:
    output:
        **step_output("prepare"),
    log:
        str(LOGS / "prepare" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    params:
        # The sections it reads (datasets.<name>, data), less keys at their default, plus the
        # folder's fingerprint: see dataset_params.
        settings=dataset_params,
    shell:
        "cdrepro prepare --dataset {wildcards.dataset} > {log} 2>&1"


# The held-out split (kNN bank and probe training set vs scored images): only evaluation reads it.
rule split:
    input:
        images=rules.prepare.output.images,
        meta=rules.prepare.output.meta,
    output:
        **step_output("split"),
    log:
        str(LOGS / "split" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    params:
        sections=step_params("split"),
    shell:
        "cdrepro split --dataset {wildcards.dataset} > {log} 2>&1"


rule baseline:
    input:
        images=rules.prepare.output.images,
        meta=rules.prepare.output.meta,
    output:
        **step_output("baseline"),
    log:
        str(LOGS / "baseline" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    params:
        sections=step_params("baseline"),
    shell:
        "cdrepro baseline --dataset {wildcards.dataset} > {log} 2>&1"
