rule prepare:
    output:
        images=str(PATHS.prepared("{dataset}")),
        meta=str(PATHS.prepared_meta("{dataset}")),
    params:
        settings=dataset_params,
    log:
        str(LOGS / "prepare" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro prepare --dataset {wildcards.dataset} > {log} 2>&1"


rule baseline:
    input:
        images=rules.prepare.output.images,
        meta=rules.prepare.output.meta,
    output:
        str(PATHS.baseline("{dataset}")),
    params:
        evaluate=config["evaluate"],
    log:
        str(LOGS / "baseline" / "{dataset}.log"),
    conda:
        "../../environment.yml"
    shell:
        "cdrepro baseline --dataset {wildcards.dataset} > {log} 2>&1"
