"""Each method across one property of its runs' data, and the change from the property's
smallest value: the number of clusters K (``many_clusters``, CDC's claim) or the training set's
imbalance ratio (``long_tail``, CLD's claim). Both tables are this frame, keyed differently.

``frame_of`` gives our rows of the backbone and final stages (every score) with the key of
each row's dataset, the mean over seeds, and ``change``: that mean minus the run group's at the
smallest key (empty at the smallest itself). A run group is a method's variant at a batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cdrepro import atomic, latex
from cdrepro.results import BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, ProfileResults, dataset_order

GROUP = ["method", "variant", "batch_size"]


def columns(key: str) -> list[str]:
    """The frame's (and its CSV's) columns with ``key`` as the property's column."""
    return [*GROUP, "stage_role", "metric", "dataset", key, "mean", "n_seeds", "change"]


def frame_of(results: ProfileResults, key: str, key_of: Callable[[Mapping[str, Any]], float]) -> pd.DataFrame:
    """Our rows (``columns(key)``) in the order: run group (as the params list them),
    stage role, score, key, dataset. ``key_of`` reads the key from a run's metrics.json; every
    run of a dataset has the same."""
    keys = {m["dataset"]: key_of(m) for m in results.metrics}
    frame = results.frame
    roles = frame["stage_role"].isin([BACKBONE_ROLE, FINAL_ROLE])
    ours = frame[(frame["variant"] != BASELINE_VARIANT) & roles].copy()
    ours[key] = ours["dataset"].map(keys)
    order = {d: i for i, d in enumerate(dataset_order(keys, results.titles))}
    first_run: dict[tuple[str, str, int], int] = {}  # each run group's place in the params' run order
    for m in results.metrics:
        first_run.setdefault((m["method"], m["variant"], m["batch_size"]), len(first_run))
    ours["_group"] = [first_run[g] for g in zip(ours["method"], ours["variant"], ours["batch_size"], strict=True)]
    ours["_order"] = ours["dataset"].map(order)
    ours = ours.sort_values(["_group", "stage_role", "metric", key, "_order"])
    smallest = ours.groupby([*GROUP, "stage_role", "metric"])["mean"].transform("first")
    at_smallest = ours[key] == ours.groupby(GROUP)[key].transform("min")
    ours["change"] = (ours["mean"] - smallest).where(~at_smallest)
    return ours[columns(key)].reset_index(drop=True)


def group_label(results: ProfileResults, method: str, variant: str) -> str:
    """A run group's name in a table: its method's label, and the variant where it differs."""
    return results.method_label(variant, method) + ("" if variant == method else f" ({variant})")


def table_float(stem: str, what: str, lines: list[str], results_label: str, generator: str) -> str:
    """The LaTeX float of a shift table: ``lines`` (its tabular), captioned ``what`` and where
    every stage and score is (``<stem>.csv``) and which results it is of."""
    caption = (
        f"{what}; mean over seeds, every stage and score in {latex.latex_escape(stem + '.csv')}. "
        f"From {latex.latex_escape(results_label)}."
    )
    return latex.table_float(stem.replace("_", "-"), caption, lines, generator=generator, small=True)


def table_files(stem: str) -> tuple[str, str]:
    """A shift table's files, ``<stem>.tex`` and ``<stem>.csv``: its step's declaration."""
    return (f"{stem}.tex", f"{stem}.csv")


def write_table(
    out_dir: Path, stem: str, frame: pd.DataFrame, tex: Callable[[str], str], results_label: str | None
) -> list[Path]:
    """Write ``tex(label)`` as ``<stem>.tex`` and ``frame`` as ``<stem>.csv``, atomically, into
    ``out_dir``; the label names the results (by default ``out_dir``'s profile)."""
    out_dir = Path(out_dir)
    tex_file, csv_file = table_files(stem)
    atomic.write_text(out_dir / tex_file, tex(results_label or latex.default_results_label(out_dir)))
    atomic.write_text(out_dir / csv_file, frame.to_csv(index=False, float_format="%.6f"))
    return [out_dir / tex_file, out_dir / csv_file]


__all__ = [
    "GROUP",
    "group_label",
    "columns",
    "frame_of",
    "table_files",
    "table_float",
    "write_table",
]
