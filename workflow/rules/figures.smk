# Figures (src/cdrepro/figures/): t-SNE one job per run, as it is the costly part on a CPU; the
# rest (curves, ablation charts, head statistics, LIME views, the summary table) one job per
# profile. The PNGs and the summary are marked for the HTML report (snakemake --report), with
# captions in workflow/report/.
include: "figure_files.smk"


rule tsne:
    input:
        model=rules.train.output.model,
        prepared=prepared_of_run,
    output:
        figure_files(FIGURES.tsne("{run}"), "../report/tsne.rst", "t-SNE", "{run}"),
    log:
        str(LOGS / "tsne" / "{run}.log"),
    conda:
        "../../environment.yml"
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_EVAL,
        gpu_slot=SLOTS_PER_EVAL,
    params:
        sections=step_params("tsne"),
    shell:
        "cdrepro tsne --run {wildcards.run} --threads {threads} > {log} 2>&1"


rule figures:
    input:
        curves=expand(str(PATHS.curves("{run}")), run=RUNS),
        metrics=expand(str(PATHS.metrics("{run}")), run=RUNS),
        baselines=expand(str(PATHS.baseline("{dataset}")), dataset=DATASETS),
        models=[str(PATHS.model(rid)) for rid in HEAD_RUNS],
        prepared=sorted({str(PATHS.prepared(RUNS[rid].dataset)) for rid in HEAD_RUNS}),
    output:
        report(str(FIGURES.summary()), caption="../report/summary.rst", category="Results"),
        [figure_files(FIGURES.curves(d), "../report/curves.rst", "Training curves", d) for d in DATASETS],
        [figure_files(FIGURES.ablation(d), "../report/ablation.rst", "Ablations", d) for d in DATASETS],
        [figure_files(FIGURES.comparison(d), "../report/methods.rst", "Methods", d) for d in COMPARISON_FIGURE_DATASETS],
        [
            figure_files(FIGURES.head_figure(rid, name), f"../report/{name}.rst", "Feature heads", rid)
            for rid in HEAD_RUNS
            for name in HEAD_FIGURES
        ],
    log:
        str(LOGS / "figures.log"),
    conda:
        "../../environment.yml"
    threads: CPU_THREADS
    resources:
        gpu=GPUS_PER_EVAL,
        gpu_slot=SLOTS_PER_EVAL,
    params:
        sections=step_params("figures"),
    shell:
        "cdrepro figures --threads {threads} > {log} 2>&1"
