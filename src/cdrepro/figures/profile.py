"""The profile's figure step (``cdrepro figures``, one job per profile): what it reads and writes.

Training curves and ablation charts per dataset, head statistics and LIME views of every run
with a head, and the summary table (HTML, for the report). The t-SNE figures, the costly part on
a CPU, are one job per run instead (``cdrepro tsne``, ``figures.tsne``). Models run with
``evaluate.batch_size``, which changes nothing in the outputs (the model is in eval mode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cdrepro import config as cfg
from cdrepro import tables
from cdrepro.atomic import write_text
from cdrepro.data.prepared import PreparedDataset, load_prepared
from cdrepro.figures import ablation, curves, heads, lime_views, summary
from cdrepro.figures.embedding import embed_run
from cdrepro.figures.output import save_figure
from cdrepro.figures.paths import FigurePaths, head_runs
from cdrepro.runs import ProfilePaths, run_id


def profile_figures(params: dict[str, Any], threads: int | None = None) -> list[Path]:
    """Curves and ablation charts per dataset, head figures per run with a head, the summary."""
    if threads:
        torch.set_num_threads(threads)
    paths = ProfilePaths.from_params(params)
    where = FigurePaths.of(paths)
    dpi = params["figures"]["dpi"]
    runs = cfg.runs_of(params)
    datasets = sorted({run.dataset for run in runs})
    titles = {name: ds.get("title", name) for name, ds in params["datasets"].items()}
    metrics = [json.loads(paths.metrics(run_id(run)).read_text()) for run in runs]
    baselines = [json.loads(paths.baseline(dataset).read_text()) for dataset in datasets]
    ours, paper, repo = tables.collect(metrics, baselines), tables.load_paper_results(), tables.load_repo_variability()

    written: list[Path] = []
    comparisons = {}
    for dataset in datasets:
        title = titles.get(dataset, dataset)
        frame = curves.curves_frame([(run, paths.curves(run_id(run))) for run in runs if run.dataset == dataset])
        written += save_figure(curves.plot_curves(frame, title), where.curves(dataset), frame, dpi)
        comparisons[dataset] = ablation.comparison_frame(dataset, ours, paper, repo)
        written += save_figure(ablation.plot_ablation(comparisons[dataset], title), where.ablation(dataset),
                               comparisons[dataset], dpi)
    write_text(where.summary(), summary.summary_html(comparisons, titles, params["profile"]))
    written.append(where.summary())

    with_head = head_runs(params)
    for dataset in sorted({run.dataset for run in with_head}):
        data = load_prepared(paths.prepared(dataset))  # once for all its runs
        for run in (run for run in with_head if run.dataset == dataset):
            written += head_figures(params, run_id(run), data, paths)
    return written


def head_figures(params: dict[str, Any], rid: str, data: PreparedDataset, paths: ProfilePaths) -> list[Path]:
    """Activity and correlation of every head over every image, and LIME views of a few heads."""
    where = FigurePaths.of(paths)
    settings = cfg.resolve_run(params, cfg.find_run(params, rid))
    figures = params["figures"]
    run = embed_run(settings, data, paths.model(rid), params["evaluate"]["batch_size"])
    thresholds = figures["heads"]["thresholds"]
    activity = heads.head_activity(run.final, thresholds)
    written = save_figure(heads.plot_head_activity(activity, thresholds, rid),
                          where.head_figure(rid, "head_activity"), activity, figures["dpi"])
    corr = heads.head_correlation(run.final)
    written += save_figure(heads.plot_head_correlation(corr, rid), where.head_figure(rid, "head_correlation"),
                           heads.correlation_frame(corr), figures["dpi"])
    frame, pictures = lime_views.lime_frame(run, figures["lime"])
    written += save_figure(lime_views.plot_lime(frame, pictures, figures["lime"], rid),
                           where.head_figure(rid, "lime"), frame, figures["dpi"])
    return written
