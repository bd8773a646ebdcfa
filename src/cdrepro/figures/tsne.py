"""t-SNE of a run's backbone stage and its method's final stage (CD: the heads f, or z without
a head), for a fixed sample of images coloured by their true class: the paper's Appendix A
(Figures 4-7).

One job per run (``cdrepro tsne --run ID``, ``figures.tsne``): t-SNE is the costly part of the
figures on a CPU, so runs are embedded in parallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from cdrepro import run_settings as rs
from cdrepro.data.prepared import load_prepared
from cdrepro.figures.embedding import EmbeddedRun, embed_run
from cdrepro.figures.output import save_figure
from cdrepro.figures.paths import FigurePaths
from cdrepro.runs import ProfilePaths


def sample_indices(n_images: int, sample: int, seed: int) -> np.ndarray:
    """``sample`` distinct images drawn with ``seed`` (every image if there are fewer), sorted:
    the same images for every run of a dataset, so their pictures compare."""
    if sample >= n_images:
        return np.arange(n_images)
    return np.sort(np.random.default_rng(seed).choice(n_images, size=sample, replace=False))


def embed_2d(features: np.ndarray, perplexity: float, max_iter: int, seed: int) -> np.ndarray:
    """(n, d) -> (n, 2). The perplexity is capped at (n - 1) / 3, since t-SNE looks at 3 x
    perplexity neighbours of each point and a small sample has fewer."""
    perplexity = min(float(perplexity), (len(features) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=max_iter, init="pca", random_state=seed)
    return tsne.fit_transform(features.astype(np.float32, copy=False))


def stage_titles(run: EmbeddedRun) -> dict[str, str]:
    """``(a) backbone stage: output h``, ``(b) feature stage: output f``, ... per shown stage."""
    return {
        stage: f"({chr(ord('a') + i)}) {stage} stage: output {run.stages[stage].output}"
        for i, stage in enumerate(run.shown_stages)
    }


def tsne_frame(run: EmbeddedRun, tsne_params: dict[str, Any]) -> pd.DataFrame:
    """The 2-D points of the backbone and the final stage: one row per (stage, image) with its
    label and class."""
    frames = []
    for stage in run.shown_stages:
        points = embed_2d(
            run.stage_features(stage), tsne_params["perplexity"], tsne_params["max_iter"], tsne_params["seed"]
        )
        frames.append(
            pd.DataFrame(
                {
                    "stage": stage,
                    "image": run.indices,
                    "label": run.labels,
                    "class": [run.data.class_names[label] for label in run.labels],
                    "x": points[:, 0],
                    "y": points[:, 1],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def class_palette(n_classes: int) -> str:
    """Distinct colours for up to 20 classes (CIFAR-100-20 has 20)."""
    return "tab10" if n_classes <= 10 else "tab20" if n_classes <= 20 else "husl"


def plot_tsne(
    frame: pd.DataFrame, class_names: list[str], title: str, titles: dict[str, str] | None = None
) -> plt.Figure:
    """One panel per stage of ``frame``, titled from ``titles`` (stage -> title; default: the
    stage's name)."""
    stages = list(dict.fromkeys(frame["stage"]))
    titles = titles or {}
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 5), squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        sns.scatterplot(
            data=frame[frame["stage"] == stage],
            x="x",
            y="y",
            hue="class",
            hue_order=class_names,
            palette=class_palette(len(class_names)),
            s=8,
            linewidth=0,
            ax=ax,
            legend=ax is axes[0][-1],
        )
        ax.set(title=titles.get(stage, stage), xlabel="", ylabel="", xticks=[], yticks=[])
    axes[0][-1].legend(
        title="class",
        bbox_to_anchor=(1.02, 1),
        loc="upper left",
        fontsize=7,
        markerscale=2,
        ncols=1 if len(class_names) <= 10 else 2,
    )
    n_images = frame["image"].nunique()
    fig.suptitle(f"{title}: t-SNE of {n_images} images, coloured by true class")
    return fig


def tsne_figure(params: dict[str, Any], rid: str, threads: int | None = None) -> list[Path]:
    """t-SNE of one run's fixed sample of images, backbone and final stage: figure and points."""
    if threads:
        torch.set_num_threads(threads)
    paths = ProfilePaths.from_params(params)
    settings = rs.resolve_run(params, rs.find_run(params, rid))
    tsne_params = params["figures"]["tsne"]
    data = load_prepared(paths.prepared(settings.dataset))
    sample = sample_indices(len(data), tsne_params["sample"], tsne_params["seed"])
    run = embed_run(settings, data, paths.model(rid), params["evaluate"]["batch_size"], sample)
    with threadpool_limits(threads):  # t-SNE's OpenMP threads; None leaves the default
        frame = tsne_frame(run, tsne_params)
    figure = plot_tsne(frame, data.class_names, rid, stage_titles(run))
    return save_figure(figure, FigurePaths.of(paths).tsne(rid), frame, params["figures"]["dpi"])
