"""Training curves: the total loss, each of the method's loss terms and the learning rate per
epoch, all runs of one dataset on one figure (from each run's ``curves.csv``).

The terms are whatever columns a run's curves.csv has between ``loss`` and ``seconds``
(``cdrepro.results.curve_terms``), so a method's new term gets its own panel with no edit here.
One panel per distinct title (``term_label``): runs of several methods share a panel where a
term means the same (``instance``: the NT-Xent of every method that has it) and get their own
where one name means two things (CD's ``entropy`` is maximised, CC's minimised); a run draws a
line only in the panels of the terms it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from cdrepro.methods.cc import ContrastiveClustering
from cdrepro.methods.cdc import ContrastiveDisentanglementForClustering
from cdrepro.methods.cld import CrossLevelDiscrimination
from cdrepro.results import ResultsError, curve_terms, read_curves
from cdrepro.runs import Run, run_id

# Panel titles of the columns we know; any other term is titled by its own name. NE is
# maximised (the total subtracts it), so it rises.
TERM_LABELS: dict[str, str] = {
    "loss": "total loss",
    "instance": "instance loss",
    "feature": "feature loss",
    "entropy": "normalized entropy NE",
    "lr": "learning rate",
}
# A method's own meaning of a term, where the name alone would say something else or nothing.
_CC, _CLD = ContrastiveClustering.name, CrossLevelDiscrimination.name
_CDC = ContrastiveDisentanglementForClustering.name
METHOD_TERM_LABELS: dict[tuple[str, str], str] = {
    (_CC, "entropy"): "cluster entropy log K - H(p) (CC)",
    (_CC, "cluster"): "cluster contrast (CC)",
    (_CLD, "group"): "cross-level group loss (CLD)",
    (_CDC, "contrast"): "joint contrast on [p; z] (CDC)",
    (_CDC, "swap"): "swapped Sinkhorn cross-entropy (CDC)",
}
COLUMNS = ["run", "label", "method", "variant", "batch_size", "epoch", "term", "panel", "value"]


def term_label(term: str, method: str = "") -> str:
    """A panel's title: the method's own name for the term, else the term's, else the term."""
    return METHOD_TERM_LABELS.get((method, term)) or TERM_LABELS.get(term, term)


def run_label(run: Run, seeds: int) -> str:
    """How a run is named in a legend: variant and batch size, the seed only if a dataset has
    several seeds."""
    label = f"{run.variant} (bs {run.batch_size})"
    return f"{label}, seed {run.seed}" if seeds > 1 else label


def _plotted(rows: list[dict[str, float]]) -> list[str]:
    """The columns a run's curves plot: loss, its terms, lr."""
    return ["loss", *curve_terms(dict.fromkeys(k for row in rows for k in row)), "lr"]


def run_curves(path: Path, rid: str) -> list[dict[str, float]]:
    """A run's curves.csv rows; ResultsError if it holds none.

    An error, not a warning: the figure's legend reads as the dataset's runs, so one without a
    run misleads, and a warning in the figures job's log is seen by no one under Snakemake (a
    failed job's error is on its FAILED line). The fix is cheap and exact: training writes the
    file again from the finished checkpoint's history, training nothing."""
    rows = read_curves(path)
    if not rows:
        raise ResultsError(
            f"{path} holds no epochs (empty, or only its header), so run {rid} would be "
            f"missing from the training curves: write it again with cdrepro train --run "
            f"{rid} (a finished run's checkpoint.pt holds every epoch: nothing is retrained)"
        )
    return rows


def curves_frame(runs: Sequence[tuple[Run, Path]], methods: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Long format, one row per (run, epoch, plotted column) with a value in the run's
    curves.csv (``COLUMNS``). ``methods``: variant -> method, for the panels' titles (a
    variant it lacks: titled by the term alone)."""
    seeds = len({run.seed for run, _ in runs})
    records = []
    for run, path in runs:
        rows = run_curves(path, run_id(run))
        method = (methods or {}).get(run.variant, "")
        lead = {
            "run": run_id(run),
            "label": run_label(run, seeds),
            "method": method,
            "variant": run.variant,
            "batch_size": run.batch_size,
        }
        records += [
            {**lead, "epoch": int(row["epoch"]), "term": term, "panel": term_label(term, method), "value": row[term]}
            for term in _plotted(rows)
            for row in rows
            if term in row
        ]
    return pd.DataFrame(records, columns=COLUMNS)


def panels(frame: pd.DataFrame) -> list[str]:
    """The panels' titles: the total loss, every term any run has (in order), the lr."""
    first, last = term_label("loss"), term_label("lr")
    return [first, *(p for p in dict.fromkeys(frame["panel"]) if p not in (first, last)), last]


PANELS_PER_ROW = 5  # several methods' terms make ten panels or more: wrap, not one long strip
LEGEND_COLUMNS = 4
# Ten colours, then the same ten dashed, then dotted: a dozen runs in one continuous palette
# ("husl") put neighbours in hues too close to tell apart.
LINE_DASHES: tuple[str | tuple[int, int], ...] = ("", (4, 2), (1, 1))


def run_styles(labels: Sequence[str]) -> dict[str, tuple[tuple[float, float, float], str | tuple[int, int]]]:
    """Each run's colour and dashes (seaborn's form: "" is a solid line)."""
    colours = sns.color_palette("tab10", 10)
    return {label: (colours[i % 10], LINE_DASHES[(i // 10) % len(LINE_DASHES)]) for i, label in enumerate(labels)}


def _legend(fig: plt.Figure, styles: Mapping[str, tuple], height: float) -> float:
    """The runs' legend under the panels; the fraction of the figure's ``height`` (inches) it takes."""
    handles = [
        plt.Line2D([], [], color=colour, linestyle=(0, dashes) if dashes else "-", label=label)
        for label, (colour, dashes) in styles.items()
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=min(len(handles), LEGEND_COLUMNS),
        bbox_to_anchor=(0.5, 0),
        frameon=False,
    )
    return (0.25 * -(-len(handles) // LEGEND_COLUMNS) + 0.15) / height


def plot_curves(frame: pd.DataFrame, title: str) -> plt.Figure:
    shown = panels(frame)
    cols = min(len(shown), PANELS_PER_ROW)
    rows = -(-len(shown) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.4 * rows + 0.4), squeeze=False)
    for ax in grid.flat[len(shown) :]:
        ax.set_visible(False)
    axes = grid.flat[: len(shown)]
    labels = list(dict.fromkeys(frame["label"]))
    styles = run_styles(labels)
    palette, dashes = ({label: style[i] for label, style in styles.items()} for i in (0, 1))
    for ax, panel in zip(axes, shown, strict=True):
        part = frame[frame["panel"] == panel]
        if len(part):
            sns.lineplot(
                data=part,
                x="epoch",
                y="value",
                hue="label",
                hue_order=labels,
                palette=palette,
                style="label",
                style_order=labels,
                dashes=dashes,
                ax=ax,
                legend=False,
                marker="." if part["epoch"].nunique() < 30 else None,
            )
        ax.set(title=panel, xlabel="epoch", ylabel="")
    axes[-1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))  # the learning rate
    legend = _legend(fig, styles, 3.4 * rows + 0.4)
    fig.suptitle(f"{title}: training curves per epoch")
    fig.tight_layout(rect=(0, legend, 1, 1))
    return fig
