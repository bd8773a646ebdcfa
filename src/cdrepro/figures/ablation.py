"""Ablation bar charts: NMI/ARI/ACC of every run of a dataset at the backbone and final stage,
with the paper's numbers where it has them.

References (``cdrepro.tables`` reads them from ``references/``): the paper's CD-128/CD-256
(Tables 2-3) beside our ``cd`` at that batch size, the authors' repository mean +- std
(``cd``, ``no_head``, batch 128) beside ours, and our raw-pixel K-means as a line on the
backbone panels. The paper's ablation tables lost their numbers in our copy, so the other
variants have no reference.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cdrepro.tables import ABLATION_BATCH_SIZE, BASELINE_VARIANT, CD, METRICS, STAGES

COLUMNS = ["source", "label", "variant", "batch_size", "stage", "layer", "metric", "value", "std", "n_seeds"]
SOURCES = {"ours": "ours", "paper": "paper", "authors_repo": "authors' repository (mean, std)",
           "kmeans_pixels": "K-means on raw pixels (ours)"}
MARKERS = {"paper": ("D", "black"), "authors_repo": ("o", "dimgray")}


def bar_label(variant: str, batch_size: int, final_layer: str) -> str:
    """``cd (bs 128)``; a run whose final output is not the feature predictor's says which it
    is: ``no_head (bs 128), z``."""
    suffix = ", z" if final_layer == "projector" else ""
    return f"{variant} (bs {batch_size}){suffix}"


def _ours(dataset: str, ours: pd.DataFrame) -> list[dict]:
    mine = ours[ours["dataset"] == dataset]
    finals = mine[mine["stage"] == "feature"]
    final_layer = dict(zip(zip(finals["variant"], finals["batch_size"]), finals["feature_stage"]))
    rows = []
    for rec in mine.to_dict("records"):
        std = float(rec["std"]) if int(rec["n_seeds"]) > 1 and not pd.isna(rec["std"]) else math.nan
        if rec["variant"] == BASELINE_VARIANT:
            rows.append({"source": "kmeans_pixels", "label": "K-means (pixels)", "variant": BASELINE_VARIANT,
                         "batch_size": None, "stage": rec["stage"], "layer": "pixels", "metric": rec["metric"],
                         "value": float(rec["mean"]), "std": math.nan, "n_seeds": 1})
            continue
        batch_size = int(rec["batch_size"])
        label = bar_label(rec["variant"], batch_size, final_layer[(rec["variant"], rec["batch_size"])])
        rows.append({"source": "ours", "label": label,
                     "variant": rec["variant"], "batch_size": batch_size, "stage": rec["stage"],
                     "layer": rec["feature_stage"], "metric": rec["metric"], "value": float(rec["mean"]),
                     "std": std, "n_seeds": int(rec["n_seeds"])})
    return rows


def _references(dataset: str, bars: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame) -> list[dict]:
    """The paper's and the authors' numbers for the bars we have."""
    rows = []
    for (variant, batch_size, label), _ in bars.groupby(["variant", "batch_size", "label"], sort=False):
        batch_size = int(batch_size)  # a float when the frame also holds the baseline (no batch size)
        if variant == CD:
            for rec in paper[(paper["dataset"] == dataset) & (paper["method"] == f"CD-{batch_size}")].to_dict("records"):
                rows += [{"source": "paper", "label": label, "variant": variant, "batch_size": batch_size,
                          "stage": rec["stage"], "layer": rec["stage"], "metric": m, "value": float(rec[m]),
                          "std": math.nan, "n_seeds": None} for m in METRICS]
        if batch_size == ABLATION_BATCH_SIZE:
            for rec in repo[(repo["dataset"] == dataset) & (repo["model"] == variant)].to_dict("records"):
                rows += [{"source": "authors_repo", "label": label, "variant": variant, "batch_size": batch_size,
                          "stage": rec["stage"], "layer": rec["stage"], "metric": m,
                          "value": float(rec[f"{m}_mean"]), "std": float(rec[f"{m}_std"]), "n_seeds": None}
                         for m in METRICS]
    return rows


def comparison_frame(dataset: str, ours: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame) -> pd.DataFrame:
    """Every number the dataset's chart shows. ``ours``: ``cdrepro.tables.collect``'s frame;
    ``paper``/``repo``: ``tables.load_paper_results()`` / ``tables.load_repo_variability()``."""
    mine = pd.DataFrame(_ours(dataset, ours), columns=COLUMNS)
    bars = mine[mine["source"] == "ours"]
    frame = pd.concat([mine, pd.DataFrame(_references(dataset, bars, paper, repo), columns=COLUMNS)],
                      ignore_index=True)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def plot_ablation(frame: pd.DataFrame, title: str) -> plt.Figure:
    bars = frame[frame["source"] == "ours"]
    labels = list(dict.fromkeys(bars["label"]))
    fig, axes = plt.subplots(len(STAGES), len(METRICS), figsize=(3.2 * len(METRICS) + 1, 2.2 + 0.28 * len(labels) * len(STAGES)),
                             squeeze=False)
    y = np.arange(len(labels))
    colours = plt.get_cmap("tab10")
    for row, stage in enumerate(STAGES):
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            cell = frame[(frame["stage"] == stage) & (frame["metric"] == metric)]
            ours = cell[cell["source"] == "ours"].set_index("label").reindex(labels)
            ax.barh(y, ours["value"], xerr=ours["std"].fillna(0), color=[colours(i % 10) for i in range(len(labels))],
                    alpha=0.85, height=0.7, label=SOURCES["ours"])
            for source, (marker, colour) in MARKERS.items():
                refs = cell[cell["source"] == source]
                if len(refs):
                    ax.errorbar(refs["value"], [labels.index(lb) for lb in refs["label"]],
                                xerr=refs["std"].fillna(0), fmt=marker, color=colour, markersize=5,
                                capsize=2, label=SOURCES[source])
            pixels = cell[cell["source"] == "kmeans_pixels"]
            if len(pixels):
                ax.axvline(float(pixels["value"].iloc[0]), color="crimson", linestyle="--", linewidth=1,
                           label=SOURCES["kmeans_pixels"])
            low = min(0.0, float(cell["value"].min()) - 0.05) if len(cell) else 0.0  # ARI can be < 0
            ax.set(xlim=(low, 1), yticks=y, yticklabels=labels if col == 0 else [], title=f"{stage}: {metric.upper()}")
            ax.invert_yaxis()
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncols=len(handles),
               bbox_to_anchor=(0.5, -0.04), frameon=False)
    fig.suptitle(f"{title}: K-means NMI / ARI / ACC per run")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
