"""Writing a figure's files: PNG and PDF of the plot, CSV of its numbers, each atomically.

Byte-stable on purpose (no creation date or software version inside), so the same numbers
give the same files and DVC sees no change where there is none.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from cdrepro.atomic import atomic_path, write_text
from cdrepro.figures.paths import FORMATS

matplotlib.use("Agg")  # files only: no display, whatever the environment says

# What each format would otherwise stamp into the file and change on every save.
_STABLE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}

# One look for every figure of the package (seaborn's defaults for print, light grid).
sns.set_theme(context="paper", style="whitegrid")


def save_figure(fig: plt.Figure, stem: Path, data: pd.DataFrame, dpi: int) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.csv`` (``data``, the plotted numbers);
    close the figure. Returns the paths written."""
    written = []
    try:
        for fmt in FORMATS:
            path = stem.with_suffix(f".{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_STABLE_METADATA[fmt])
            written.append(path)
    finally:
        plt.close(fig)
    csv = stem.with_suffix(".csv")
    write_text(csv, data.to_csv(index=False))
    return written + [csv]
