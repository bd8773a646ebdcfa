"""The long-tail comparison (issue 22; CLD's claim that its features suffer less than instance
discrimination's on long-tailed data): each method trained on a balanced training set and on
long-tailed ones (``datasets.*.long_tail``), and what each loses. In the paper and quick
profiles: CIFAR-10's train split whole (imbalance ratio 1) and at ratios 10 and 100, every
held-out score measured on the same balanced test split, K-means on every image.

Input: a profile's results for the ``long_tail`` target (``cdrepro long-tail-table``; every run
where no run is tagged for it). Output (``write_long_tail_table``):

* ``long_tail.csv``: ``cdrepro.comparison.shift``'s frame keyed by ``imbalance_ratio``: per run
  group, stage role (backbone, final) and score, one row per dataset with its ratio, the mean
  over seeds and ``change``, that mean minus the group's at the smallest ratio;
* ``long_tail.tex``: at the smallest ratio the backbone's held-out kNN and linear-probe accuracy
  and the final stage's NMI and ACC; at every other ratio their change. A profile whose runs
  have one ratio (the embedded profile) gets its numbers and a caption that says so.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdrepro.comparison import shift
from cdrepro.data.training_set import imbalance_ratio
from cdrepro.latex import dataset_title, latex_escape, latex_row
from cdrepro.metrics import KNN, LINEAR
from cdrepro.results import BACKBONE_ROLE, FINAL_ROLE, ProfileResults

LONG_TAIL_TABLE_FILES: tuple[str, ...] = shift.table_files("long_tail")
"""The files of the ``long_tail_table`` step: what its rule and DVC stage declare."""
LONG_TAIL_KEY = "imbalance_ratio"
CELLS: tuple[tuple[str, str, str], ...] = (
    (BACKBONE_ROLE, KNN, "kNN"),
    (BACKBONE_ROLE, LINEAR, "Linear"),
    (FINAL_ROLE, "nmi", "NMI"),
    (FINAL_ROLE, "acc", "ACC"),
)
"""The .tex table's scores: (stage role, metric, heading). The held-out ones are the claim's."""


def long_tail_frame(results: ProfileResults) -> pd.DataFrame:
    """Our rows with each dataset's imbalance ratio (1 where not long-tailed) and the change
    from the smallest ratio (``cdrepro.comparison.shift``)."""
    return shift.frame_of(results, LONG_TAIL_KEY, lambda m: imbalance_ratio(m.get("training_set")))


def _cells(part: pd.DataFrame, ratio: float, column: str, form: str) -> list[str]:
    at = part[part[LONG_TAIL_KEY] == ratio].set_index(["stage_role", "metric"])[column]
    return [format(at[(role, metric)], form) if pd.notna(at.get((role, metric))) else "--" for role, metric, _ in CELLS]


def _heading(frame: pd.DataFrame, ratio: float, results: ProfileResults) -> str:
    names = ", ".join(
        dataset_title(d, results.titles) for d in sorted(set(frame.loc[frame[LONG_TAIL_KEY] == ratio, "dataset"]))
    )
    return f"{names} (balanced)" if ratio == 1 else f"{names} (ratio {ratio:g})"


def _tex(frame: pd.DataFrame, results: ProfileResults, results_label: str) -> str:
    ratios = sorted(frame[LONG_TAIL_KEY].unique())
    width = len(CELLS)
    header = ["Method", "Batch"]
    header += [rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(_heading(frame, r, results))}}}" for r in ratios]
    lines = [
        r"\begin{tabular}{ll" + "c" * width * len(ratios) + "}",
        r"\toprule",
        latex_row(header),
        latex_row(["", ""] + [name for *_, name in CELLS] * len(ratios)),
        r"\midrule",
    ]
    for (method, variant, batch), part in frame.groupby(shift.GROUP, sort=False):
        cells = [latex_escape(shift.group_label(results, method, variant)), str(batch)]
        cells += _cells(part, ratios[0], "mean", ".3f")
        for ratio in ratios[1:]:
            cells += _cells(part, ratio, "change", "+.3f")
        lines.append(latex_row(cells))
    lines += [r"\bottomrule", r"\end{tabular}"]
    if len(ratios) > 1:
        about = f"at imbalance ratio {ratios[0]:g}, and at each larger ratio the change from it"
    else:
        about = f"at the one imbalance ratio these runs have ({ratios[0]:g}), so no change to show"
    what = (
        "Long-tailed training data: the backbone's kNN and linear-probe accuracy on the balanced "
        f"held-out test split and the final stage's NMI and ACC (every image) {about}"
    )
    return shift.table_float("long_tail", what, lines, results_label, "cdrepro.comparison.long_tail")


def write_long_tail_table(results: ProfileResults, out_dir: Path, *, results_label: str | None = None) -> list[Path]:
    """Write ``long_tail.tex`` and ``long_tail.csv`` (atomically) into ``out_dir``."""
    frame = long_tail_frame(results)
    return shift.write_table(out_dir, "long_tail", frame, lambda label: _tex(frame, results, label), results_label)


__all__ = ["LONG_TAIL_TABLE_FILES", "long_tail_frame", "write_long_tail_table"]
