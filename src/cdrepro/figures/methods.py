"""Method comparison charts: NMI/ARI/ACC at the backbone and the final stage of every method run
on one dataset, beside the published numbers, with our raw-pixel K-means as a line.

The numbers are the methods table's (``cdrepro.method_comparison.methods_frame``: the runs for the
``compare_methods`` target, each published number under the method it is of), so the chart and
the table cannot disagree. A bar is one of our (method, variant, batch size) rows; a published
number is a marker on a row of its own under its method, labelled with its source (CD's paper,
CC's own paper, the CD authors' repository); a number no reachable source confirms is hollow.
Written beside the ablation chart, for each dataset where the runs are of two methods or more
(``figures.paths.method_figure_datasets``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from cdrepro.figures.ablation import COLUMNS, SOURCES, plot_bars
from cdrepro.method_comparison import NONE, OURS
from cdrepro.results import AUTHORS_REPO, BASELINE_VARIANT, CC_PAPER, CD_PAPER, SOURCE_LABELS

MARKERS: dict[str, tuple[str, str]] = {CD_PAPER: ("D", "black"), CC_PAPER: ("s", "darkviolet"),
                                       AUTHORS_REPO: ("o", "dimgray")}
NAMES: dict[str, str] = {**SOURCES, **SOURCE_LABELS}
CHART_COLUMNS: list[str] = [*COLUMNS, "confirmed", "note"]


def _label(rec: dict) -> str:
    """A chart row: "CC, bs 128" for ours, the source ("CC's paper") for a published number."""
    if rec["source"] != OURS:
        return rec["source_label"]
    return f"{rec['method_label']}, bs {rec['batch_size']}"


def chart_frame(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's numbers as the chart plots them (``CHART_COLUMNS``). ``table``:
    ``methods_frame``'s rows; our pixel K-means becomes the ``kmeans_pixels`` line."""
    rows = []
    for rec in table[(table["dataset"] == dataset) & (table["source"] != NONE)].to_dict("records"):
        pixels = rec["source"] == OURS and rec["variant"] == BASELINE_VARIANT
        rows.append({**rec, "source": "kmeans_pixels" if pixels else rec["source"], "value": rec["mean"],
                     "label": rec["method_label"] if pixels else _label(rec)})
    frame = pd.DataFrame(rows, columns=CHART_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def plot_methods(frame: pd.DataFrame, title: str) -> plt.Figure:
    published = frame["source"].isin(list(MARKERS)).any()
    suptitle = f"{title}: NMI / ARI / ACC per method" + (", beside the published numbers" if published else "")
    return plot_bars(frame, suptitle, MARKERS, NAMES)
