"""What the feature heads do over a whole dataset: how many images each head fires on, and how
the heads' outputs correlate. Disentangled heads fire on different, partly overlapping sets of
images (neither on all images nor on none) and correlate weakly with each other."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def activity_column(threshold: float) -> str:
    """The CSV column of the image count above ``threshold``: ``images_above_0.75``."""
    return f"images_above_{threshold:g}"


def head_activity(outputs: np.ndarray, thresholds: Sequence[float]) -> pd.DataFrame:
    """One row per head: its mean output and the number of images where it is above each
    threshold. outputs: (N, K) sigmoid outputs."""
    frame = pd.DataFrame(
        {"head": np.arange(outputs.shape[1]), "mean_output": outputs.mean(axis=0), "n_images": outputs.shape[0]}
    )
    for threshold in thresholds:
        frame[activity_column(threshold)] = (outputs > threshold).sum(axis=0)
    return frame


def plot_head_activity(activity: pd.DataFrame, thresholds: Sequence[float], title: str) -> plt.Figure:
    """One bar per head and threshold, the higher thresholds drawn over the lower ones."""
    n_heads, n_images = len(activity), int(activity["n_images"].iloc[0])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.06 * n_heads + 3), 3.6))
    colours = sns.color_palette("rocket_r", len(thresholds))
    for colour, threshold in zip(colours, sorted(thresholds), strict=True):
        ax.bar(
            activity["head"],
            activity[activity_column(threshold)],
            width=1.0,
            color=colour,
            label=f"output > {threshold:g}",
        )
    ax.set(xlabel="feature head", ylabel=f"images (of {n_images})", xlim=(-0.5, n_heads - 0.5), ylim=(0, n_images))
    ax.legend(loc="upper right", framealpha=0.9)
    never = int((activity[activity_column(max(thresholds))] == 0).sum())
    ax.set_title(f"{title}: images each head fires on ({never} of {n_heads} heads never above {max(thresholds):g})")
    return fig


def head_correlation(outputs: np.ndarray) -> np.ndarray:
    """(K, K) Pearson correlation of the heads' outputs over the images; NaN for a head whose
    output is constant (no correlation is defined for it)."""
    values = outputs.astype(np.float64)
    constant = np.ptp(values, axis=0) == 0  # exactly: a mean's rounding would leave a tiny spread
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    norms[constant] = 1.0
    corr = (centred.T @ centred) / np.outer(norms, norms)
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    return np.clip(corr, -1.0, 1.0)


def correlation_frame(corr: np.ndarray) -> pd.DataFrame:
    """The matrix with a ``head`` column, one column per head."""
    frame = pd.DataFrame(corr, columns=[str(h) for h in range(corr.shape[0])])
    frame.insert(0, "head", np.arange(corr.shape[0]))
    return frame


def plot_head_correlation(corr: np.ndarray, title: str) -> plt.Figure:
    """A heatmap, drawn as one image (K x K cells as vector shapes make a slow, heavy PDF)."""
    n_heads = corr.shape[0]
    off_diagonal = np.abs(corr[~np.eye(n_heads, dtype=bool)])
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="vlag", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="Pearson r")
    ax.grid(False)
    ax.set(xlabel="feature head", ylabel="feature head")
    ax.set_title(
        f"{title}: head-head correlation\n(mean |r| off the diagonal "
        f"{np.nanmean(off_diagonal):.2f}; blank: a constant head)"
    )
    return fig
