"""The results as one HTML page for the Snakemake report: per dataset, every run's NMI/ARI/ACC at
the backbone and the final stage beside the paper's and the authors' numbers (the same numbers
as the ablation charts; the LaTeX tables lay them out as the paper does)."""

from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd

from cdrepro.figures.ablation import HELD_OUT_PANELS, ROLE_TITLES, ROLES, SOURCES
from cdrepro.results import SCORES

_STYLE = """<style>
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border-bottom: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
</style>"""


def cell(value: float, std: float) -> str:
    """``0.595``, or ``0.595 ± 0.012`` where there is a spread."""
    if pd.isna(value):
        return "–"
    return f"{value:.3f}" if pd.isna(std) else f"{value:.3f} ± {std:.3f}"


def dataset_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run or reference), one column per stage x metric."""
    frame = frame.assign(
        shown=[cell(v, s) for v, s in zip(frame["value"], frame["std"], strict=True)],
        source=frame["source"].map(SOURCES),
        column=frame["stage_role"].map(ROLE_TITLES) + " " + frame["metric"].str.upper(),
    )
    table = frame.pivot_table(index=["label", "source"], columns="column", values="shown", aggfunc="first", sort=False)
    wanted = [f"{ROLE_TITLES[role]} {metric.upper()}" for role in ROLES for metric in SCORES]
    # The held-out accuracies, where the runs have them (metrics.json before issue 22 has none).
    wanted += [c for c in (f"{ROLE_TITLES[role]} {metric.upper()}" for role, metric in HELD_OUT_PANELS) if c in table]
    table = table.reindex(columns=wanted).fillna("–").reset_index().rename(columns={"label": "run"})
    table.columns.name = None  # else to_html adds a header cell for it
    return table


def _page(title: str, body: list[str]) -> str:
    head = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    return "\n".join([head, _STYLE, "</head><body>", f"<h2>{html.escape(title)}</h2>", *body, "</body></html>"]) + "\n"


def summary_html(frames: Mapping[str, pd.DataFrame], titles: Mapping[str, str], profile: str) -> str:
    """``frames``: dataset -> ``ablation.chart_frame``."""
    parts = [
        "<p>Backbone: K-means on the backbone output h. Final stage: the method's last "
        "evaluation stage (CD: the feature predictor output f; a run without a head and SimCLR: "
        "the projector output z; CC and CDC: the argmax of the cluster head, no K-means; CLD: "
        "the group features). Where a dataset's runs end in different stages, each run's label "
        "names its own. KNN and LINEAR: held-out accuracy (weighted kNN, linear probe) on the "
        "dataset's test split, the train split as the bank and the probe's training set. "
        "Mean ± sample std where a run has several seeds.</p>"
    ]
    for dataset, frame in frames.items():
        parts.append(f"<h3>{html.escape(titles.get(dataset, dataset))}</h3>")
        parts.append(dataset_table(frame).to_html(index=False, border=0))
    return _page(f"K-means NMI / ARI / ACC, profile {profile}", parts)
