"""Ablation bar charts: NMI/ARI/ACC of every run of a dataset at the backbone and the final
stage (a method's last evaluation stage), with the paper's numbers where it has them; and, where
the runs have them, a row of their held-out accuracies (kNN on h and on the final stage, the
linear probe on h: ``HELD_OUT_PANELS``).

Our bars' error bars: the 95 % interval of the mean over seeds (none for one seed; the legend
says so). References (``cdrepro.published`` reads them from ``references/``): the paper's CD-128/CD-256
(Tables 2-3) beside our CD ``cd`` at that batch size, the authors' repository mean +- std
(``cd``, ``no_head``, batch 128) beside ours, and our raw-pixel K-means as a line on the
backbone panels. The paper's ablation tables lost their numbers in our copy, so the other
variants have no reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist

from cdrepro.metrics import HELD_OUT_SCORES, KNN, LINEAR
from cdrepro.published import REFERENCE_METHOD, authors_rows, paper_rows
from cdrepro.results import BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, SCORES
from cdrepro.seed_statistics import with_intervals

ROLES = (BACKBONE_ROLE, FINAL_ROLE)
ROLE_TITLES = {BACKBONE_ROLE: "backbone", FINAL_ROLE: "final stage"}
HELD_OUT_PANELS: tuple[tuple[str, str], ...] = ((BACKBONE_ROLE, KNN), (FINAL_ROLE, KNN), (BACKBONE_ROLE, LINEAR))
"""The held-out row's panels, left to right: (stage role, metric)."""
COLUMNS = [
    "source",
    "label",
    "method",
    "variant",
    "batch_size",
    "stage",
    "stage_role",
    "metric",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "n_seeds",
]
# Our bars' error bars are the 95 % interval of the mean over seeds, as the tables' ``±`` is
# (cdrepro.seed_statistics): the interval is what says whether two bars differ. The authors'
# repository publishes a std without its number of runs, so its markers keep the std.
OURS_LEGEND = "ours (error bar: 95% CI over seeds; no bar: one seed)"
SOURCES = {
    "ours": OURS_LEGEND,
    "paper": "paper",
    "authors_repo": "authors' repository (mean, std)",
    "kmeans_pixels": "K-means on raw pixels (ours)",
}
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
    stages = {(v, int(b)): s for v, b, s in zip(finals["variant"], finals["batch_size"], finals["stage"], strict=True)}
    differ = len(set(stages.values())) > 1
    return {key: stage if differ else None for key, stage in stages.items()}


def _ours(dataset: str, ours: pd.DataFrame) -> list[dict]:
    mine = ours[(ours["dataset"] == dataset) & ours["stage_role"].isin(ROLES)]
    final_stages = _final_stages(mine)
    rows = []
    for rec in mine.to_dict("records"):
        row = {
            "method": rec["method"],
            "variant": rec["variant"],
            "stage": rec["stage"],
            "stage_role": rec["stage_role"],
            "metric": rec["metric"],
            "value": float(rec["mean"]),
        }
        if rec["variant"] == BASELINE_VARIANT:
            rows.append(
                {
                    **row,
                    "source": "kmeans_pixels",
                    "label": "K-means (pixels)",
                    "batch_size": None,
                    "std": math.nan,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "n_seeds": 1,
                }
            )
            continue
        batch_size = int(rec["batch_size"])
        rows.append(
            {
                **row,
                "source": "ours",
                "batch_size": batch_size,
                "std": float(rec["std"]),
                "ci_low": float(rec["ci_low"]),
                "ci_high": float(rec["ci_high"]),
                "n_seeds": int(rec["n_seeds"]),
                "label": bar_label(rec["variant"], batch_size, final_stages[(rec["variant"], batch_size)]),
            }
        )
    return rows


def _references(dataset: str, bars: pd.DataFrame, references: pd.DataFrame) -> list[dict]:
    """The paper's and the authors' numbers for the bars we have (those of their method)."""
    rows = []
    refs = references[(references["dataset"] == dataset) & references["stage_role"].isin(ROLES)]
    for (method, variant, batch_size, label), _ in bars.groupby(
        ["method", "variant", "batch_size", "label"], sort=False
    ):
        if method != REFERENCE_METHOD:
            continue
        batch_size = int(batch_size)  # a float when the frame also holds the baseline (no batch size)
        hits = refs[(refs["variant"] == variant) & (refs["batch_size"] == batch_size)]
        rows += [
            {
                "source": rec["source"],
                "label": label,
                "method": method,
                "variant": variant,
                "batch_size": batch_size,
                "stage": rec["stage"],
                "stage_role": rec["stage_role"],
                "metric": rec["metric"],
                "value": float(rec["mean"]),
                "std": float(rec.get("std", math.nan)),
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n_seeds": None,
            }
            for rec in hits.to_dict("records")
        ]
    return rows


def chart_frame(dataset: str, ours: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame) -> pd.DataFrame:
    """Every number the dataset's chart shows. ``ours``: ``cdrepro.results.collect``'s frame;
    ``paper``/``repo``: ``published.load_paper_results()`` / ``published.load_repo_variability()``."""
    mine = pd.DataFrame(_ours(dataset, with_intervals(ours)), columns=COLUMNS)
    bars = mine[mine["source"] == "ours"]
    references = pd.concat([paper_rows(paper), authors_rows(repo)], ignore_index=True)
    frame = pd.concat([mine, pd.DataFrame(_references(dataset, bars, references), columns=COLUMNS)], ignore_index=True)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def ci_errors(bars: pd.DataFrame) -> np.ndarray:
    """Matplotlib's (2, n) error lengths below and above each bar's value, from its interval;
    0 (no bar) where there is none: one seed, or a row without a bar."""
    low = (bars["value"] - bars["ci_low"]).astype(float).fillna(0.0)
    high = (bars["ci_high"] - bars["value"]).astype(float).fillna(0.0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def _panel(
    ax: plt.Axes,
    cell: pd.DataFrame,
    labels: list[str],
    markers: Mapping[str, tuple[str, str]],
    names: Mapping[str, str],
) -> None:
    """One stage x metric: our bars, the references' markers (hollow where a number is not
    confirmed), the pixel baseline's line."""
    y = np.arange(len(labels))
    colours = plt.get_cmap("tab10")
    ours = cell[cell["source"] == "ours"].set_index("label").reindex(labels)
    ax.barh(
        y,
        ours["value"],
        xerr=ci_errors(ours),
        color=[colours(i % 10) for i in range(len(labels))],
        alpha=0.85,
        height=0.7,
        label=names["ours"],
    )
    for source, (marker, colour) in markers.items():
        refs = cell[cell["source"] == source]
        if len(refs):
            ax.errorbar(
                refs["value"],
                [labels.index(lb) for lb in refs["label"]],
                xerr=refs["std"].fillna(0),
                fmt=marker,
                color=colour,
                markersize=5,
                capsize=2,
                label=names[source],
            )
        doubtful = refs[~refs["confirmed"].astype(bool)] if "confirmed" in refs else refs.iloc[:0]
        if len(doubtful):  # drawn again, hollow
            ax.plot(
                doubtful["value"],
                [labels.index(lb) for lb in doubtful["label"]],
                marker,
                color=colour,
                markerfacecolor="white",
                markersize=5,
                linestyle="none",
            )
    pixels = cell[cell["source"] == "kmeans_pixels"]
    if len(pixels):
        ax.axvline(
            float(pixels["value"].iloc[0]), color="crimson", linestyle="--", linewidth=1, label=names["kmeans_pixels"]
        )


# The marks of a paired difference (``cdrepro.seed_statistics``): filled where its interval
# excludes 0, hollow where it contains 0 (within noise), a cross where there is no interval.
DIFFERENCE_STYLES = (
    ("differs", "o", "black", "difference (95% CI excludes 0)"),
    ("within_noise", "o", "white", "difference within noise (95% CI contains 0)"),
    ("one_seed", "x", "black", "difference over one shared seed (no interval)"),
)


def _difference_panel(ax: plt.Axes, cell: pd.DataFrame, pairs: list[str], metric: str) -> None:
    """One metric's paired differences: a point per pair with its interval, a line at 0."""
    cell = cell.set_index("label").reindex(pairs)
    y = np.arange(len(pairs))
    kinds = {
        "differs": cell["within_noise"].eq(False),
        "within_noise": cell["within_noise"].eq(True),
        "one_seed": cell["ci_low"].isna(),
    }
    ax.axvline(0.0, color="gray", linewidth=1)
    for kind, marker, face, name in DIFFERENCE_STYLES:
        hit = kinds[kind].to_numpy(dtype=bool)
        if hit.any():
            ax.errorbar(
                cell["value"][hit],
                y[hit],
                xerr=ci_errors(cell[hit]),
                fmt=marker,
                color="black",
                markerfacecolor=face,
                markersize=5,
                capsize=2,
                label=name,
            )
    ax.set(yticks=y, title=f"final stage: {metric.upper()} difference")


def _bar_row(
    axes_row: Sequence[plt.Axes],
    frame: pd.DataFrame,
    role: str,
    labels: list[str],
    markers: Mapping[str, tuple[str, str]],
    names: Mapping[str, str],
) -> None:
    for col, metric in enumerate(SCORES):
        ax = axes_row[col]
        cell = frame[(frame["stage_role"] == role) & (frame["metric"] == metric)]
        _panel(ax, cell, labels, markers, names)
        low = min(0.0, float(cell["value"].min()) - 0.05) if len(cell) else 0.0  # ARI can be < 0
        ax.set(xlim=(low, 1), yticks=np.arange(len(labels)), title=f"{ROLE_TITLES[role]}: {metric.upper()}")


def _held_out_row(
    axes_row: Sequence[plt.Axes],
    frame: pd.DataFrame,
    labels: list[str],
    markers: Mapping[str, tuple[str, str]],
    names: Mapping[str, str],
) -> None:
    for ax, (role, metric) in zip(axes_row, HELD_OUT_PANELS, strict=True):
        cell = frame[(frame["stage_role"] == role) & (frame["metric"] == metric)]
        _panel(ax, cell, labels, markers, names)
        what = "kNN" if metric == KNN else "linear probe"
        ax.set(xlim=(0, 1), yticks=np.arange(len(labels)), title=f"held out: {what} on {ROLE_TITLES[role]}")


def plot_bars(
    frame: pd.DataFrame,
    suptitle: str,
    markers: Mapping[str, tuple[str, str]] = MARKERS,
    names: Mapping[str, str] = SOURCES,
    differences: pd.DataFrame | None = None,
) -> plt.Figure:
    """Backbone and final stage x NMI/ARI/ACC: one row per label (a bar where it is ours, markers
    where a reference has it), in the frame's order; the pixel baseline as a line. With
    ``differences`` (rows with a ``label`` per pair, ``value``, ``ci_low``/``ci_high`` and
    ``within_noise``, at the final stage): a last row of panels, one point per pair. Where the
    frame has held-out accuracies, a row of them comes before it (``HELD_OUT_PANELS``)."""
    labels = list(dict.fromkeys(frame[frame["source"] != "kmeans_pixels"]["label"]))
    pairs = [] if differences is None else list(dict.fromkeys(differences["label"]))
    held_out = bool(frame["metric"].isin(HELD_OUT_SCORES).any())
    bar_rows = len(ROLES) + held_out
    heights = [max(len(labels), 1)] * bar_rows + ([len(pairs)] if pairs else [])
    fig, axes = plt.subplots(
        len(heights),
        len(SCORES),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
        figsize=(3.2 * len(SCORES) + 1, 2.2 + 0.28 * sum(heights) + 0.6 * len(heights)),
    )
    for row, role in enumerate(ROLES):
        _bar_row(axes[row], frame, role, labels, markers, names)
    if held_out:
        _held_out_row(axes[len(ROLES)], frame, labels, markers, names)
    for col, metric in enumerate(SCORES if pairs else ()):
        assert differences is not None  # pairs come from it
        _difference_panel(axes[-1][col], differences[differences["metric"] == metric], pairs, metric)
    for row, ticks in enumerate([labels] * bar_rows + ([pairs] if pairs else [])):
        axes[row][0].set_yticklabels(ticks)
        for ax in axes[row]:
            ax.tick_params(axis="y", labelleft=ax is axes[row][0])
            ax.invert_yaxis()
    handles: dict[str, Artist] = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    fig.suptitle(suptitle)
    fig.tight_layout()
    # Under the panels, three entries a line: the entries are long (what an error bar is), one
    # line of them all would be wider than the figure. The saved file's tight box takes it in.
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper center",
        ncols=min(len(handles), 3),
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
    )
    return fig


def plot_ablation(frame: pd.DataFrame, title: str) -> plt.Figure:
    return plot_bars(frame, f"{title}: K-means NMI / ARI / ACC per run")
