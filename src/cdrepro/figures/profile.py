"""The profile's figure step (``cdrepro figures``, one job per profile): what it reads and writes.

Training curves and ablation charts per dataset, a methods comparison chart per dataset whose
comparison runs are of several methods, head statistics and LIME views of every run whose
method has sigmoid heads, and the summary table (HTML, for the report). The t-SNE
figures, the costly part on a CPU, are one job per run instead (``cdrepro tsne``,
``figures.tsne``). Models run with ``evaluate.batch_size``, which changes nothing in the
outputs (the model is in eval mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cdrepro import run_settings as rs
from cdrepro.atomic import write_text
from cdrepro.comparison.frame import comparison_frame
from cdrepro.data.prepared import PreparedDataset, load_prepared
from cdrepro.figures import ablation, comparison, curves, heads, lime_views, summary
from cdrepro.figures.embedding import embed_run
from cdrepro.figures.output import save_figure
from cdrepro.figures.paths import FigurePaths, comparison_figure_datasets, head_runs
from cdrepro.published import (
    load_cc_results,
    load_knn_results,
    load_paper_results,
    load_repo_variability,
    published_rows,
)
from cdrepro.results import ProfileResults, comparison_target
from cdrepro.runs import ProfilePaths, run_id


def profile_figures(params: dict[str, Any], results: ProfileResults, threads: int | None = None) -> list[Path]:
    """Curves and ablation charts per dataset, method charts where there are several methods,
    head figures per run with heads, the summary. ``results``: the profile's, every run
    (``ProfileResults.load(params)``)."""
    if threads:
        torch.set_num_threads(threads)
    paths = ProfilePaths.from_params(params)
    where = FigurePaths.of(paths)
    dpi = params["figures"]["dpi"]
    runs = rs.runs_of(params)
    paper, repo = load_paper_results(), load_repo_variability()

    written: list[Path] = []
    ablations = {}
    run_methods = {name: info.method for name, info in results.variants.items()}
    for dataset in sorted({run.dataset for run in runs}):
        title = results.titles.get(dataset, dataset)
        frame = curves.curves_frame(
            [(run, paths.curves(run_id(run))) for run in runs if run.dataset == dataset], run_methods
        )
        written += save_figure(curves.plot_curves(frame, title), where.curves(dataset), frame, dpi)
        ablations[dataset] = ablation.chart_frame(dataset, results.frame, paper, repo)
        written += save_figure(
            ablation.plot_ablation(ablations[dataset], title), where.ablation(dataset), ablations[dataset], dpi
        )
    written += comparison_figures(params, results, where, dpi)
    write_text(where.summary(), summary.summary_html(ablations, results.titles, params["profile"]))
    written.append(where.summary())

    with_heads = head_runs(params)
    for dataset in sorted({run.dataset for run in with_heads}):
        data = load_prepared(paths.prepared(dataset))  # once for all its runs
        for run in (run for run in with_heads if run.dataset == dataset):
            written += head_figures(params, run_id(run), data, paths)
    return written


def comparison_figures(params: dict[str, Any], results: ProfileResults, where: FigurePaths, dpi: int) -> list[Path]:
    """The methods comparison chart of each dataset of ``comparison_figure_datasets``, from the
    runs of the comparison's target."""
    datasets = comparison_figure_datasets(params)
    if not datasets:
        return []
    target = results.restricted(run_id(run) for run in rs.runs_of(params, comparison_target(params)))
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability(), load_knn_results())
    table = comparison_frame(target, published)
    written: list[Path] = []
    for dataset in datasets:
        frame = comparison.chart_frame(table, dataset)
        written += save_figure(
            comparison.plot_comparison(frame, results.titles.get(dataset, dataset)),
            where.comparison(dataset),
            frame,
            dpi,
        )
    return written


def head_figures(params: dict[str, Any], rid: str, data: PreparedDataset, paths: ProfilePaths) -> list[Path]:
    """Activity and correlation of every head over every image, and LIME views of a few heads."""
    where = FigurePaths.of(paths)
    settings = rs.resolve_run(params, rs.find_run(params, rid))
    figures = params["figures"]
    run = embed_run(settings, data, paths.model(rid), params["evaluate"]["batch_size"])
    thresholds = figures["heads"]["thresholds"]
    activity = heads.head_activity(run.head_values, thresholds)
    written = save_figure(
        heads.plot_head_activity(activity, thresholds, rid),
        where.head_figure(rid, "head_activity"),
        activity,
        figures["dpi"],
    )
    corr = heads.head_correlation(run.head_values)
    written += save_figure(
        heads.plot_head_correlation(corr, rid),
        where.head_figure(rid, "head_correlation"),
        heads.correlation_frame(corr),
        figures["dpi"],
    )
    frame, pictures = lime_views.lime_frame(run, figures["lime"])
    written += save_figure(
        lime_views.plot_lime(frame, pictures, figures["lime"], rid),
        where.head_figure(rid, "lime"),
        frame,
        figures["dpi"],
    )
    return written
