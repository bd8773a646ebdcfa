rule prepare:
    output:
        images=str(PATHS.prepared("{dataset}")),
        meta=str(PATHS.prepared_meta("{dataset}")),
    params:
        params_file=PARAMS_FILE,
        settings=dataset_params,
    log:
        str(LOGS / "prepare" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro prepare --params {params.params_file} --dataset {wildcards.dataset} > {log} 2>&1"


rule baseline:
    input:
        images=rules.prepare.output.images,
        meta=rules.prepare.output.meta,
    output:
        str(PATHS.baseline("{dataset}")),
    params:
        params_file=PARAMS_FILE,
        evaluate=config["evaluate"],
    log:
        str(LOGS / "baseline" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro baseline --params {params.params_file} --dataset {wildcards.dataset} > {log} 2>&1"
