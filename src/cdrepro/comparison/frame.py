"""The methods comparison's numbers: ours and the published ones, lined up under the method they
are of.

One long frame (``comparison_frame``, written as ``methods.csv``) that both the LaTeX table
(``cdrepro.comparison.table``) and the comparison charts (``cdrepro.figures.comparison``) read,
so the two cannot disagree; the figures may not import the LaTeX modules, hence this one.

Rows: our backbone and final-stage numbers of every run group (and the pixel baseline), each
published number of a method we ran on that dataset (``cdrepro.published.published_rows``), and
one row per method of ``NO_PUBLISHED`` saying that there is nothing to show. Which published
number goes with which of our rows, so that nothing is compared silently across recipes:

- CD: its paper's CD-128 / CD-256 (Tables 2-3), only where we ran CD's ``cd`` at that batch size;
- CC: CC's own paper (final stage, recipe batch 256, 1000 epochs; on STL-10 with the unlabeled
  images; its STL-10 ARI unconfirmed) and CD's paper's CC column (both stages), each labelled;
  where they disagree both carry a note and neither is picked;
- SimCLR: the CD authors' repository's no-head model (the same model), mean +- std;
- CLD: its kNN accuracies (``references/knn_results.csv``: its paper's and its repository's,
  CIFAR-10 and CIFAR-100) with their setting (k, T, the features they are of) in ``setting`` and
  ``note``; where we ran CLD on another dataset, its "nothing published" row says where they are;
- CDC: nothing published on these datasets (``NO_PUBLISHED``).

Beside NMI/ARI/ACC, our rows carry the held-out accuracies where the runs have them
(``metric`` ``knn`` for the backbone and the final stage, ``linear`` for the backbone).

Our rows carry, over seeds, the mean, the sample std and the 95 % interval of the mean
(``ci_low``, ``ci_high``; "one seed" in ``note`` where there is none); ``comparison_differences``
gives the paired differences between them (``cdrepro.seed_statistics``).

Order: dataset (the paper's first), the pixel baseline, then each method in the registry's
order (``cdrepro.methods.METHODS``; an unknown one after them, by name), our rows (variant in the
params' order, batch size) before the published ones. A row's label is the method's label
("CDC (reconstructed)" for CDC), with the variant in brackets where the frame holds several
variants of the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from cdrepro.methods import METHODS
from cdrepro.methods.cdc import ContrastiveDisentanglementForClustering
from cdrepro.methods.cld import CrossLevelDiscrimination
from cdrepro.metrics import KNN
from cdrepro.published import AUTHORS_REPO, CC_PAPER, CD_PAPER, CLD_PAPER, CLD_REPO, SOURCE_LABELS
from cdrepro.results import (
    ALL_SCORES,
    BACKBONE_ROLE,
    BASELINE_VARIANT,
    FINAL_ROLE,
    ProfileResults,
    dataset_name,
    dataset_order,
)
from cdrepro.seed_statistics import SEED_STATISTICS_COLUMNS, interval_note, paired_differences, with_intervals

ROLES: tuple[str, ...] = (BACKBONE_ROLE, FINAL_ROLE)
OURS, NONE = "ours", "none"
SOURCE_ORDER: tuple[str, ...] = (OURS, CD_PAPER, CC_PAPER, AUTHORS_REPO, CLD_PAPER, CLD_REPO, NONE)
PIXELS_LABEL = "K-means (raw pixels)"
NO_PUBLISHED: dict[str, str] = {
    CrossLevelDiscrimination.name: "no published NMI/ARI/ACC (CLD's paper gives only kNN and linear-probe accuracies)",
    ContrastiveDisentanglementForClustering.name: "no published numbers on these datasets (the abstract gives "
    "only a full-ImageNet ACC)",
}
"""The methods with no published clustering number on any of our datasets, and why. A (dataset,
method) with a published number of another kind (CLD's kNN on CIFAR-10) shows that instead."""
CSV_COLUMNS: list[str] = [
    "dataset",
    "dataset_title",
    "method",
    "method_label",
    "variant",
    "batch_size",
    "source",
    "source_label",
    "paper_column",
    "stage",
    "stage_role",
    "metric",
    *SEED_STATISTICS_COLUMNS,
    "confirmed",
    "setting",
    "note",
]


def _ours(frame: pd.DataFrame) -> pd.DataFrame:
    """Our backbone and final-stage rows (and the pixel baseline's); "one seed" in the note of
    a row with no interval."""
    ours = frame[frame["stage_role"].isin(ROLES)]
    return ours.assign(
        source=OURS, paper_column="", confirmed=True, setting="", note=[interval_note(n) for n in ours["n_seeds"]]
    )


def batch_of(value: Any) -> int | None:
    """A batch size cell as a number (the pixel baseline and some published numbers have none)."""
    return None if pd.isna(value) else int(value)


def _published_for(ours: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The published rows of a (dataset, method) we have; one of a variant at a batch size
    (CD-128) only where we ran that variant at that batch size."""
    have = set(zip(ours["dataset"], ours["method"], strict=True))
    runs = {(d, v, batch_of(b)) for d, v, b in zip(ours["dataset"], ours["variant"], ours["batch_size"], strict=True)}
    keep = [
        (d, m) in have and (v == "" or (d, v, batch_of(b)) in runs)
        for d, m, v, b in zip(
            published["dataset"], published["method"], published["variant"], published["batch_size"], strict=True
        )
    ]
    return published[keep]


def _published_elsewhere(method: str, dataset: str, published: pd.DataFrame) -> str:
    """The published kNN accuracies of ``method`` on other datasets than ``dataset`` (its paper's),
    in words: what a reader of its "nothing published" row can set our numbers beside."""
    rows = published[
        (published["method"] == method)
        & (published["dataset"] != dataset)
        & (published["metric"] == KNN)
        & (published["source"] == CLD_PAPER)
    ]
    found = [
        f"{rec['dataset']} {rec['mean']:.3f} ({rec['paper_column']}, {rec['setting']})"
        for rec in rows.to_dict("records")
    ]
    return f"; its published kNN accuracy: {', '.join(found)}" if found else ""


def _nothing_published(ours: pd.DataFrame, kept: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method) of ``NO_PUBLISHED`` that we ran and that has no published
    row of any kind there (``kept``: the published rows shown beside ours), saying so and where
    its published numbers are, if anywhere (``published``: every one)."""
    have = set(zip(kept["dataset"], kept["method"], strict=True))
    pairs = dict.fromkeys(
        (d, m) for d, m in zip(ours["dataset"], ours["method"], strict=True) if m in NO_PUBLISHED and (d, m) not in have
    )
    return pd.DataFrame(
        [
            {
                "dataset": d,
                "method": m,
                "variant": "",
                "source": NONE,
                "paper_column": "",
                "stage": "",
                "stage_role": "",
                "metric": "",
                "confirmed": True,
                "setting": "",
                "note": NO_PUBLISHED[m] + _published_elsewhere(m, d, published),
            }
            for d, m in pairs
        ],
        columns=CSV_COLUMNS,
    )


def _labels(frame: pd.DataFrame, results: ProfileResults) -> dict[tuple[str, str], str]:
    """(method, variant) -> the row label: the method's label, and the variant where the table
    has several variants of the method (none needed for the variant named as its method)."""
    ours = frame[(frame["source"] == OURS) & (frame["variant"] != BASELINE_VARIANT)]
    pairs = list(dict.fromkeys(zip(ours["method"], ours["variant"], strict=True)))
    counts = pd.Series([m for m, _ in pairs]).value_counts().to_dict()
    labels = {("", BASELINE_VARIANT): PIXELS_LABEL}
    for method, variant in pairs:
        label = results.method_label(variant, method)
        labels[(method, variant)] = label if counts[method] == 1 or variant == method else f"{label} ({variant})"
    return labels


def _method_label(method: str, variant: str, labels: Mapping[tuple[str, str], str]) -> str:
    if (method, variant) in labels:
        return labels[(method, variant)]
    if method == "":
        return PIXELS_LABEL
    return METHODS[method].label if method in METHODS else method


def _source_label(source: str, paper_column: str) -> str:
    if source in (OURS, NONE):
        return "Ours" if source == OURS else "published"
    if source == CC_PAPER:
        return SOURCE_LABELS[source]
    column = "no-head model" if source == AUTHORS_REPO else paper_column
    return f"{SOURCE_LABELS[source]}: {column}"


def _sort_keys(frame: pd.DataFrame, results: ProfileResults) -> pd.DataFrame:
    """The frame in table order: dataset, method (pixels first, then the registry's order), our
    rows before the published ones, variant (the params' order), batch size, stage, metric."""
    datasets = {d: i for i, d in enumerate(dataset_order(set(frame["dataset"]), results.titles))}
    methods = {m: i for i, m in enumerate(["", *METHODS, *sorted(set(frame["method"]) - set(METHODS) - {""})])}
    variants = {v: i for i, v in enumerate([BASELINE_VARIANT, *results.variants])}
    keys = pd.DataFrame(
        {
            "d": frame["dataset"].map(datasets),
            "m": frame["method"].map(methods),
            "s": frame["source"].map({s: i for i, s in enumerate(SOURCE_ORDER)}),
            "v": frame["variant"].map(lambda v: variants.get(v, len(variants))),
            "b": frame["batch_size"].fillna(-1).astype(int),
            "p": frame["paper_column"],
            "r": frame["stage_role"].map({r: i for i, r in enumerate(ROLES)}).fillna(-1),
            "x": frame["metric"].map({m: i for i, m in enumerate(ALL_SCORES)}).fillna(-1),
        }
    )
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def comparison_frame(results: ProfileResults, published: pd.DataFrame) -> pd.DataFrame:
    """Every number of the methods table, long format (``CSV_COLUMNS``), in table order.
    ``published``: ``cdrepro.published.published_rows(...)``."""
    ours = _ours(with_intervals(results.frame))
    kept = _published_for(ours, published)
    parts = [ours, kept, _nothing_published(ours, kept, published)]
    present = [p.reindex(columns=CSV_COLUMNS) for p in parts if len(p)]  # concat warns on empty frames
    frame = pd.concat(present, ignore_index=True) if present else pd.DataFrame(columns=CSV_COLUMNS)
    for column in ("variant", "paper_column", "setting", "note", "stage", "stage_role", "metric", "seeds", "values"):
        frame[column] = frame[column].fillna("")
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    labels = _labels(frame, results)
    frame["method_label"] = [
        _method_label(m, v, labels) for m, v in zip(frame["method"], frame["variant"], strict=True)
    ]
    frame["source_label"] = [_source_label(s, c) for s, c in zip(frame["source"], frame["paper_column"], strict=True)]
    frame["dataset_title"] = [dataset_name(d, results.titles) for d in frame["dataset"]]
    return _sort_keys(frame, results)


def comparison_differences(table: pd.DataFrame) -> pd.DataFrame:
    """The paired differences of our rows of ``comparison_frame`` (every two methods, each ablation
    against its full model, at one dataset and batch size; ``seed_statistics``), in the
    table's order, with each side's row label (``method_label``, ``vs_method_label``), so the
    LaTeX and the chart name a pair as the table names its rows."""
    differences = paired_differences(table, ROLES)
    labels = dict(zip(zip(table["method"], table["variant"], strict=True), table["method_label"], strict=True))
    return differences.assign(
        method_label=[labels[key] for key in zip(differences["method"], differences["variant"], strict=True)],
        vs_method_label=[labels[key] for key in zip(differences["vs_method"], differences["vs_variant"], strict=True)],
    )
