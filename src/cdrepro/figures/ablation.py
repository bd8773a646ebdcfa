"""Ablation bar charts: NMI/ARI/ACC of every run of a dataset at the backbone and the final
stage (a method's last evaluation stage), with the paper's numbers where it has them.

References (``cdrepro.results`` reads them from ``references/``): the paper's CD-128/CD-256
(Tables 2-3) beside our CD ``cd`` at that batch size, the authors' repository mean +- std
(``cd``, ``no_head``, batch 128) beside ours, and our raw-pixel K-means as a line on the
backbone panels. The paper's ablation tables lost their numbers in our copy, so the other
variants have no reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cdrepro.results import (BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, REFERENCE_METHOD, SCORES,
                             authors_rows, paper_rows)

ROLES = (BACKBONE_ROLE, FINAL_ROLE)
ROLE_TITLES = {BACKBONE_ROLE: "backbone", FINAL_ROLE: "final stage"}
COLUMNS = ["source", "label", "method", "variant", "batch_size", "stage", "stage_role", "metric", "value",
           "std", "n_seeds"]
SOURCES = {"ours": "ours", "paper": "paper", "authors_repo": "authors' repository (mean, std)",
           "kmeans_pixels": "K-means on raw pixels (ours)"}
MARKERS = {"paper": ("D", "black"), "authors_repo": ("o", "dimgray")}


def bar_label(variant: str, batch_size: int, final_stage: str | None = None) -> str:
    """``cd (bs 128)``; with ``final_stage`` (given where a chart's runs end in different
    stages) ``no_head (bs 128), projector``."""
    label = f"{variant} (bs {batch_size})"
    return f"{label}, {final_stage}" if final_stage else label


def _final_stages(mine: pd.DataFrame) -> dict[tuple[str, int], str | None]:
    """(variant, batch size) -> the final stage its label names: None where every run of the
    chart ends in the same stage."""
    finals = mine[(mine["stage_role"] == FINAL_ROLE) & (mine["variant"] != BASELINE_VARIANT)]
    stages = {(v, int(b)): s for v, b, s in zip(finals["variant"], finals["batch_size"], finals["stage"])}
    differ = len(set(stages.values())) > 1
    return {key: stage if differ else None for key, stage in stages.items()}


def _ours(dataset: str, ours: pd.DataFrame) -> list[dict]:
    mine = ours[(ours["dataset"] == dataset) & ours["stage_role"].isin(ROLES)]
    final_stages = _final_stages(mine)
    rows = []
    for rec in mine.to_dict("records"):
        row = {"method": rec["method"], "variant": rec["variant"], "stage": rec["stage"],
               "stage_role": rec["stage_role"], "metric": rec["metric"], "value": float(rec["mean"])}
        if rec["variant"] == BASELINE_VARIANT:
            rows.append({**row, "source": "kmeans_pixels", "label": "K-means (pixels)", "batch_size": None,
                         "std": math.nan, "n_seeds": 1})
            continue
        batch_size = int(rec["batch_size"])
        std = float(rec["std"]) if int(rec["n_seeds"]) > 1 and not pd.isna(rec["std"]) else math.nan
        rows.append({**row, "source": "ours", "batch_size": batch_size, "std": std, "n_seeds": int(rec["n_seeds"]),
                     "label": bar_label(rec["variant"], batch_size, final_stages[(rec["variant"], batch_size)])})
    return rows


def _references(dataset: str, bars: pd.DataFrame, references: pd.DataFrame) -> list[dict]:
    """The paper's and the authors' numbers for the bars we have (those of their method)."""
    rows = []
    refs = references[(references["dataset"] == dataset) & references["stage_role"].isin(ROLES)]
    for (method, variant, batch_size, label), _ in bars.groupby(["method", "variant", "batch_size", "label"],
                                                                sort=False):
        if method != REFERENCE_METHOD:
            continue
        batch_size = int(batch_size)  # a float when the frame also holds the baseline (no batch size)
        hits = refs[(refs["variant"] == variant) & (refs["batch_size"] == batch_size)]
        rows += [{"source": rec["source"], "label": label, "method": method, "variant": variant,
                  "batch_size": batch_size, "stage": rec["stage"], "stage_role": rec["stage_role"],
                  "metric": rec["metric"], "value": float(rec["mean"]), "std": float(rec.get("std", math.nan)),
                  "n_seeds": None} for rec in hits.to_dict("records")]
    return rows


def comparison_frame(dataset: str, ours: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame) -> pd.DataFrame:
    """Every number the dataset's chart shows. ``ours``: ``cdrepro.results.collect``'s frame;
    ``paper``/``repo``: ``results.load_paper_results()`` / ``results.load_repo_variability()``."""
    mine = pd.DataFrame(_ours(dataset, ours), columns=COLUMNS)
    bars = mine[mine["source"] == "ours"]
    references = pd.concat([paper_rows(paper), authors_rows(repo)], ignore_index=True)
    frame = pd.concat([mine, pd.DataFrame(_references(dataset, bars, references), columns=COLUMNS)],
                      ignore_index=True)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def _panel(ax: plt.Axes, cell: pd.DataFrame, labels: list[str], markers: Mapping[str, tuple[str, str]],
           names: Mapping[str, str]) -> None:
    """One stage x metric: our bars, the references' markers (hollow where a number is not
    confirmed), the pixel baseline's line."""
    y = np.arange(len(labels))
    colours = plt.get_cmap("tab10")
    ours = cell[cell["source"] == "ours"].set_index("label").reindex(labels)
    ax.barh(y, ours["value"], xerr=ours["std"].fillna(0), color=[colours(i % 10) for i in range(len(labels))],
            alpha=0.85, height=0.7, label=names["ours"])
    for source, (marker, colour) in markers.items():
        refs = cell[cell["source"] == source]
        if len(refs):
            ax.errorbar(refs["value"], [labels.index(lb) for lb in refs["label"]], xerr=refs["std"].fillna(0),
                        fmt=marker, color=colour, markersize=5, capsize=2, label=names[source])
        doubtful = refs[~refs["confirmed"].astype(bool)] if "confirmed" in refs else refs.iloc[:0]
        if len(doubtful):  # drawn again, hollow
            ax.plot(doubtful["value"], [labels.index(lb) for lb in doubtful["label"]], marker, color=colour,
                    markerfacecolor="white", markersize=5, linestyle="none")
    pixels = cell[cell["source"] == "kmeans_pixels"]
    if len(pixels):
        ax.axvline(float(pixels["value"].iloc[0]), color="crimson", linestyle="--", linewidth=1,
                   label=names["kmeans_pixels"])


def plot_bars(frame: pd.DataFrame, suptitle: str, markers: Mapping[str, tuple[str, str]] = MARKERS,
              names: Mapping[str, str] = SOURCES) -> plt.Figure:
    """Backbone and final stage x NMI/ARI/ACC: one row per label (a bar where it is ours, markers
    where a reference has it), in the frame's order; the pixel baseline as a line."""
    labels = list(dict.fromkeys(frame[frame["source"] != "kmeans_pixels"]["label"]))
    fig, axes = plt.subplots(len(ROLES), len(SCORES), squeeze=False,
                             figsize=(3.2 * len(SCORES) + 1, 2.2 + 0.28 * len(labels) * len(ROLES)))
    for row, role in enumerate(ROLES):
        for col, metric in enumerate(SCORES):
            ax = axes[row][col]
            cell = frame[(frame["stage_role"] == role) & (frame["metric"] == metric)]
            _panel(ax, cell, labels, markers, names)
            low = min(0.0, float(cell["value"].min()) - 0.05) if len(cell) else 0.0  # ARI can be < 0
            ax.set(xlim=(low, 1), yticks=np.arange(len(labels)), yticklabels=labels if col == 0 else [],
                   title=f"{ROLE_TITLES[role]}: {metric.upper()}")
            ax.invert_yaxis()
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncols=len(handles),
               bbox_to_anchor=(0.5, -0.04), frameon=False)
    fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_ablation(frame: pd.DataFrame, title: str) -> plt.Figure:
    return plot_bars(frame, f"{title}: K-means NMI / ARI / ACC per run")
