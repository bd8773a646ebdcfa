"""Training curves: every loss term and the learning rate per epoch, all runs of one dataset on
one figure (from each run's ``curves.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from cdrepro.runs import Run, run_id

# curves.csv column -> panel title. NE is maximised (the total subtracts it), so it rises.
TERMS: dict[str, str] = {
    "loss": "total loss",
    "instance": "instance loss",
    "feature": "feature loss",
    "entropy": "normalized entropy NE",
    "lr": "learning rate",
}


def run_label(run: Run, seeds: int) -> str:
    """How a run is named in a legend: variant and batch size, the seed only if a dataset has
    several seeds."""
    label = f"{run.variant} (bs {run.batch_size})"
    return f"{label}, seed {run.seed}" if seeds > 1 else label


def curves_frame(runs: Sequence[tuple[Run, Path]]) -> pd.DataFrame:
    """Long format, one row per (run, epoch, term) present in the run's curves.csv (no-head runs
    have no feature or NE column)."""
    seeds = len({run.seed for run, _ in runs})
    frames = []
    for run, path in runs:
        curves = pd.read_csv(path)
        terms = [term for term in TERMS if term in curves and curves[term].notna().any()]
        long = curves.melt(id_vars="epoch", value_vars=terms, var_name="term", value_name="value").dropna()
        long.insert(0, "run", run_id(run))
        long.insert(1, "label", run_label(run, seeds))
        long.insert(2, "variant", run.variant)
        long.insert(3, "batch_size", run.batch_size)
        frames.append(long)
    columns = ["run", "label", "variant", "batch_size", "epoch", "term", "value"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def plot_curves(frame: pd.DataFrame, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, len(TERMS), figsize=(3.3 * len(TERMS), 3.4))
    labels = list(dict.fromkeys(frame["label"]))
    palette = dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))
    for ax, (term, name) in zip(axes, TERMS.items()):
        part = frame[frame["term"] == term]
        if len(part):
            sns.lineplot(data=part, x="epoch", y="value", hue="label", hue_order=labels, palette=palette,
                         ax=ax, legend=False, marker="." if part["epoch"].nunique() < 30 else None)
        ax.set(title=name, xlabel="epoch", ylabel="")
    axes[list(TERMS).index("lr")].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    handles = [plt.Line2D([], [], color=palette[label], label=label) for label in labels]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(labels), 4), bbox_to_anchor=(0.5, -0.12),
               frameon=False)
    fig.suptitle(f"{title}: training curves per epoch")
    fig.tight_layout()
    return fig

