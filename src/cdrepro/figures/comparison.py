"""The methods comparison's charts: NMI/ARI/ACC at the backbone and the final stage of every
method run on one dataset, beside the published numbers, with our raw-pixel K-means as a line.

The numbers are the methods table's (``cdrepro.comparison.frame.comparison_frame``: the runs for the
``compare_methods`` target, each published number under the method it is of), so the chart and
the table cannot disagree. A bar is one of our (method, variant, batch size) rows; a published
number is a marker on a row of its own under its method, labelled with its source (CD's paper,
CC's own paper, the CD authors' repository); a number no reachable source confirms is hollow.
Our bars' error bars are the 95 % interval of the mean over seeds (none for one seed: the
legend says so); under the bars, one panel per metric of the final stage's paired differences
(``comparison.frame.comparison_differences``), a point per pair with its interval, hollow where
within noise. Written beside the ablation chart (as ``methods_<dataset>``), for each dataset where
the runs are of two methods or more (``figures.paths.comparison_figure_datasets``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from cdrepro.comparison.frame import NONE, OURS, comparison_differences
from cdrepro.figures.ablation import COLUMNS, SOURCES, plot_bars
from cdrepro.metrics import HELD_OUT_SCORES
from cdrepro.published import AUTHORS_REPO, CC_PAPER, CD_PAPER, CLD_PAPER, CLD_REPO, SOURCE_LABELS
from cdrepro.results import BASELINE_VARIANT, FINAL_ROLE
from cdrepro.seed_statistics import interval_note

MARKERS: dict[str, tuple[str, str]] = {
    CD_PAPER: ("D", "black"),
    CC_PAPER: ("s", "darkviolet"),
    AUTHORS_REPO: ("o", "dimgray"),
    CLD_PAPER: ("^", "darkgreen"),
    CLD_REPO: ("v", "seagreen"),
}
NAMES: dict[str, str] = {**SOURCES, **SOURCE_LABELS}
CHART_COLUMNS: list[str] = [*COLUMNS, "confirmed", "note", "within_noise"]
DIFFERENCE = "difference"
"""The ``source`` of a chart row that is a paired difference of two of our rows (final stage)."""


def _label(rec: dict) -> str:
    """A chart row: "CC, bs 128" for ours, the source ("CC's paper") for a published number."""
    if rec["source"] != OURS:
        return rec["source_label"]
    return f"{rec['method_label']}, bs {rec['batch_size']}"


def _difference_rows(table: pd.DataFrame, dataset: str) -> list[dict]:
    """The final stage's paired differences of the dataset's pairs (``comparison_differences``),
    labelled "CD - SimCLR, bs 128", with "(one seed)" where there is no interval. Only the final
    stage: a fourth row of panels would make the chart too tall to read; methods.tex and
    methods_differences.csv have the backbone's."""
    differences = comparison_differences(table)
    mine = differences[(differences["dataset"] == dataset) & (differences["stage_role"] == FINAL_ROLE)]
    rows = []
    for rec in mine.to_dict("records"):
        note = interval_note(rec["n_seeds"])
        label = f"{rec['method_label']} − {rec['vs_method_label']}, bs {rec['batch_size']}"
        rows.append(
            {
                **rec,
                "source": DIFFERENCE,
                "value": rec["mean"],
                "confirmed": True,
                "label": f"{label} ({note})" if note else label,
            }
        )
    return rows


def chart_frame(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's numbers as the chart plots them (``CHART_COLUMNS``). ``table``:
    ``comparison_frame``'s rows; our pixel K-means becomes the ``kmeans_pixels`` line; the paired
    differences of the final stage follow, ``source`` ``difference``."""
    rows = []
    for rec in table[(table["dataset"] == dataset) & (table["source"] != NONE)].to_dict("records"):
        pixels = rec["source"] == OURS and rec["variant"] == BASELINE_VARIANT
        rows.append(
            {
                **rec,
                "source": "kmeans_pixels" if pixels else rec["source"],
                "value": rec["mean"],
                "label": rec["method_label"] if pixels else _label(rec),
            }
        )
    rows += _difference_rows(table, dataset)
    frame = pd.DataFrame(rows, columns=CHART_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def plot_comparison(frame: pd.DataFrame, title: str) -> plt.Figure:
    """``chart_frame``'s rows: the bars and markers, then the paired differences' panels."""
    published = frame["source"].isin(list(MARKERS)).any()
    held_out = " and held-out accuracy" if frame["metric"].isin(HELD_OUT_SCORES).any() else ""
    beside = ", beside the published numbers" if published else ""
    suptitle = f"{title}: NMI / ARI / ACC{held_out} per method{beside}"
    differences = frame[frame["source"] == DIFFERENCE]
    return plot_bars(
        frame[frame["source"] != DIFFERENCE], suptitle, MARKERS, NAMES, differences if len(differences) else None
    )
