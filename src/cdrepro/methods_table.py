"""The methods table: every method trained here under one protocol, beside its published numbers.

Input: a profile's results for the ``compare_methods`` target (``cdrepro methods-table`` loads
them; every run where no run is tagged for it) and every published number of a method we train
(``cdrepro.results.published_rows``). Output (``write_methods_table``): ``methods.tex`` and
``methods.csv`` in ``<results_dir>/<profile>/tables/``.

Layout: one block per dataset. In it, the raw-pixel K-means row (ours, then CD's paper's
K-means), then each method in the registry's order (``cdrepro.methods.METHODS``; a method we do
not know after them, by name): one row per (variant, batch size) of ours, then the method's
published rows. Columns: the backbone stage (K-means on h) and the method's final stage,
NMI/ARI/ACC, mean +- sample std over seeds.

Which published number sits under which of our rows (so that nothing is compared silently
across recipes):

- CD: its paper's CD-128 / CD-256 (Tables 2-3), only where we ran CD's ``cd`` at that batch size;
- CC: CC's own paper (final stage, recipe batch 256, 1000 epochs; on STL-10 with the unlabeled
  images; its STL-10 ARI unconfirmed) and CD's paper's CC column (both stages), each labelled;
  where they disagree both carry a note and neither is picked;
- SimCLR: the CD authors' repository's no-head model (the same model), mean +- std;
- CLD and CDC: a row saying that there is nothing to show (``NO_PUBLISHED``).

A row's label is the method's label (``Method.label``: "CDC (reconstructed)" for CDC), with the
variant in brackets where the table holds several variants of the method. Bold: the best of our
rows per column within a dataset; published rows are not ranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from cdrepro import atomic
from cdrepro.methods import METHODS
from cdrepro.results import (AUTHORS_REPO, BASELINE_VARIANT, CC_PAPER, CD_PAPER, SCORES, SOURCE_LABELS,
                             ProfileResults, load_cc_results, load_paper_results, load_repo_variability,
                             published_rows)
from cdrepro.tables import (ROLES, Cell, bold_by_column, dataset_order, dataset_title, default_results_label,
                            latex_escape, latex_row, render_cells, table_float)

OURS, NONE = "ours", "none"
SOURCE_ORDER: tuple[str, ...] = (OURS, CD_PAPER, CC_PAPER, AUTHORS_REPO, NONE)
PIXELS_LABEL = "K-means (raw pixels)"
NO_PUBLISHED: dict[str, str] = {
    "cld": "no published NMI/ARI/ACC (CLD's paper gives only kNN and linear-probe accuracies)",
    "cdc": "no published numbers on these datasets (the abstract gives only a full-ImageNet ACC)",
}
"""The methods with no published clustering number on any of our datasets, and why."""
CSV_COLUMNS: list[str] = [
    "dataset", "dataset_title", "method", "method_label", "variant", "batch_size", "source",
    "source_label", "paper_column", "stage", "stage_role", "metric", "mean", "std", "n_seeds", "seeds",
    "confirmed", "note",
]
UNCONFIRMED = r"$^{\ast}$"
_NOTE_SYMBOLS = (r"\dagger", r"\ddagger", r"\S", r"\P", r"\|")


class RowKey(NamedTuple):
    """One row of the LaTeX table: whose numbers, from where."""

    dataset: str
    method: str
    variant: str
    batch_size: int | None
    source: str
    paper_column: str


# --------------------------------------------------------------------------------------------
# The long frame (methods.csv)


def _ours(frame: pd.DataFrame) -> pd.DataFrame:
    """Our backbone and final-stage rows (and the pixel baseline's)."""
    ours = frame[frame["stage_role"].isin(ROLES)]
    return ours.assign(source=OURS, paper_column="", confirmed=True, note="")


def _published_for(ours: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The published rows of a (dataset, method) we have; one of a variant at a batch size
    (CD-128) only where we ran that variant at that batch size."""
    have = set(zip(ours["dataset"], ours["method"]))
    runs = {(d, v, None if pd.isna(b) else int(b)) for d, v, b in zip(ours["dataset"], ours["variant"], ours["batch_size"])}
    keep = [(d, m) in have and (v == "" or (d, v, None if pd.isna(b) else int(b)) in runs)
            for d, m, v, b in zip(published["dataset"], published["method"], published["variant"],
                                  published["batch_size"])]
    return published[keep].drop(columns=[c for c in ("table",) if c in published.columns])


def _nothing_published(ours: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method) of ``NO_PUBLISHED`` that we ran, saying so."""
    pairs = dict.fromkeys((d, m) for d, m in zip(ours["dataset"], ours["method"]) if m in NO_PUBLISHED)
    return pd.DataFrame([{"dataset": d, "method": m, "variant": "", "source": NONE, "paper_column": "",
                          "stage": "", "stage_role": "", "metric": "", "confirmed": True, "note": NO_PUBLISHED[m]}
                         for d, m in pairs], columns=CSV_COLUMNS)


def _labels(frame: pd.DataFrame, results: ProfileResults) -> dict[tuple[str, str], str]:
    """(method, variant) -> the row label: the method's label, and the variant where the table
    has several variants of the method (none needed for the variant named as its method)."""
    ours = frame[(frame["source"] == OURS) & (frame["variant"] != BASELINE_VARIANT)]
    pairs = list(dict.fromkeys(zip(ours["method"], ours["variant"])))
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
    keys = pd.DataFrame({
        "d": frame["dataset"].map(datasets), "m": frame["method"].map(methods),
        "s": frame["source"].map({s: i for i, s in enumerate(SOURCE_ORDER)}),
        "v": frame["variant"].map(lambda v: variants.get(v, len(variants))),
        "b": frame["batch_size"].fillna(-1).astype(int), "p": frame["paper_column"],
        "r": frame["stage_role"].map({r: i for i, r in enumerate(ROLES)}).fillna(-1),
        "x": frame["metric"].map({m: i for i, m in enumerate(SCORES)}).fillna(-1),
    })
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def methods_frame(results: ProfileResults, published: pd.DataFrame) -> pd.DataFrame:
    """Every number of the methods table, long format (``CSV_COLUMNS``), in table order.
    ``published``: ``results.published_rows(...)``."""
    ours = _ours(results.frame)
    parts = [ours, _published_for(ours, published), _nothing_published(ours)]
    present = [p.reindex(columns=CSV_COLUMNS) for p in parts if len(p)]  # concat warns on empty frames
    frame = pd.concat(present, ignore_index=True) if present else pd.DataFrame(columns=CSV_COLUMNS)
    for column in ("variant", "paper_column", "note", "stage", "stage_role", "metric", "seeds"):
        frame[column] = frame[column].fillna("")
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    labels = _labels(frame, results)
    frame["method_label"] = [_method_label(m, v, labels) for m, v in zip(frame["method"], frame["variant"])]
    frame["source_label"] = [_source_label(s, c) for s, c in zip(frame["source"], frame["paper_column"])]
    frame["dataset_title"] = [results.titles.get(d) or d for d in frame["dataset"]]
    return _sort_keys(frame, results)


# --------------------------------------------------------------------------------------------
# The LaTeX table


def _key(rec: Mapping) -> RowKey:
    batch = rec["batch_size"]
    return RowKey(rec["dataset"], rec["method"], rec["variant"], None if pd.isna(batch) else int(batch),
                  rec["source"], rec["paper_column"])


def table_rows(frame: pd.DataFrame) -> dict[RowKey, pd.DataFrame]:
    """The frame's rows grouped into the table's rows, in order."""
    keys = [_key(rec) for rec in frame.to_dict("records")]
    groups: dict[RowKey, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {key: frame.iloc[rows] for key, rows in groups.items()}


def _cells(part: pd.DataFrame) -> list[Cell | None]:
    """Backbone then final stage, NMI/ARI/ACC; a std only where it summarises several values."""
    cells: list[Cell | None] = []
    for role in ROLES:
        for metric in SCORES:
            hit = part[(part["stage_role"] == role) & (part["metric"] == metric)]
            if hit.empty:
                cells.append(None)
                continue
            rec = hit.iloc[0]
            several = rec["source"] != OURS or (not pd.isna(rec["n_seeds"]) and int(rec["n_seeds"]) > 1)
            std = float(rec["std"]) if several and not pd.isna(rec["std"]) else None
            cells.append(Cell(float(rec["mean"]), std))
    return cells


def _unconfirmed(part: pd.DataFrame) -> set[int]:
    """The cell indices (as ``_cells``) of numbers no reachable source confirms."""
    hit = part[~part["confirmed"].astype(bool)]
    return {ROLES.index(r) * len(SCORES) + SCORES.index(m) for r, m in zip(hit["stage_role"], hit["metric"])}


def note_marks(frame: pd.DataFrame) -> dict[str, str]:
    """A footnote symbol per distinct note of the published rows (a method's "nothing
    published" is said in its row, not marked)."""
    notes = [n for n in dict.fromkeys(frame.loc[frame["source"].isin([CD_PAPER, CC_PAPER, AUTHORS_REPO]), "note"])
             for n in n.split("; ") if n]
    notes = list(dict.fromkeys(notes))
    return {note: _NOTE_SYMBOLS[i % len(_NOTE_SYMBOLS)] for i, note in enumerate(notes)}


def _lead(key: RowKey, part: pd.DataFrame, marks: Mapping[str, str]) -> list[str]:
    """Method (our rows only), batch size, source (with its notes' marks), final stage."""
    rec = part.iloc[0]
    method = latex_escape(rec["method_label"]) if key.source == OURS else ""
    notes = [n for n in dict.fromkeys(n for note in part["note"] for n in str(note).split("; ")) if n in marks]
    source = latex_escape(rec["source_label"]) + (f"$^{{{','.join(marks[n] for n in notes)}}}$" if notes else "")
    finals = part.loc[part["stage_role"] == ROLES[-1], "stage"]
    batch = "" if key.batch_size is None else str(key.batch_size)
    return [method, batch, source, latex_escape(finals.iloc[0]) if len(finals) else ""]


def _dataset_lines(dataset: str, rows: Sequence[tuple[RowKey, pd.DataFrame]], titles: Mapping[str, str],
                   marks: Mapping[str, str]) -> list[str]:
    """One dataset's block: our rows ranked per column, published rows as printed."""
    ours = [_cells(part) for key, part in rows if key.source == OURS]
    bold = iter(bold_by_column(ours))
    lines = [r"\midrule"]
    for i, (key, part) in enumerate(rows):
        lead = [dataset_title(dataset, titles) if i == 0 else ""] + _lead(key, part, marks)
        if key.source == NONE:
            text = latex_escape(str(part.iloc[0]["note"]))
            lines.append(latex_row(lead + [rf"\multicolumn{{6}}{{l}}{{\textit{{{text}}}}}"]))
            continue
        cells = render_cells(_cells(part), next(bold) if key.source == OURS else set())
        cells = [c + UNCONFIRMED if j in _unconfirmed(part) else c for j, c in enumerate(cells)]
        lines.append(latex_row(lead + cells))
    return lines


def _header() -> list[str]:
    return [
        r"\begin{tabular}{llrll" + "c" * 6 + "}",
        r"\toprule",
        latex_row(["Dataset", "Method", "Batch", "Source", "Final stage",
                   r"\multicolumn{3}{c}{Backbone}", r"\multicolumn{3}{c}{Final stage}"]),
        r"\cmidrule(lr){6-8}\cmidrule(lr){9-11}",
        latex_row([""] * 5 + [m.upper() for m in SCORES] * 2),
    ]


def _caption(frame: pd.DataFrame, label: str, marks: Mapping[str, str]) -> str:
    notes = " ".join(f"${mark}$: {latex_escape(note)}." for note, mark in marks.items())
    unconfirmed = "" if frame["confirmed"].astype(bool).all() else \
        f" {UNCONFIRMED}: not confirmed by a reachable source."
    return (
        "Every method trained here under one protocol (the same images, backbone, augmentation, "
        rf"optimizer, epochs, seeds and evaluation), from \texttt{{{latex_escape(label)}}}: K-means "
        "NMI/ARI/ACC on the backbone output h and on each method's final stage (CC and CDC: the "
        r"argmax of their cluster head, no K-means), mean $\pm$ sample std where a run has several "
        "seeds. Beside ours, the published numbers, each labelled with its source: CD's paper "
        "(Tables 2-3) at our CD run's batch size; CC's own paper (its recipe: batch size 256, no "
        "schedule or clipping, 1000 epochs) and CD's paper's CC column, both shown where they exist; "
        "the CD authors' repository's no-head model, which is SimCLR's (mean $\\pm$ std over several "
        "runs). CDC is reconstructed from its abstract (docs/methods.md). Bold: the best of our rows "
        "per column within a dataset; published rows are not ranked. ``--'': no number." + unconfirmed
        + (" " + notes if notes else "")
    )


def render_methods_table(frame: pd.DataFrame, titles: Mapping[str, str], label: str) -> str:
    """``methods.tex`` from ``methods_frame``'s rows; a one-line note when there is no run."""
    if not (frame["source"] == OURS).any():
        note = f"Methods table: no run in \\texttt{{{latex_escape(label)}}}."
        return f"% Generated by cdrepro.methods_table.\n\\noindent\\textit{{{note}}}\\par\n"
    rows = table_rows(frame)
    marks = note_marks(frame)
    lines = _header()
    for dataset in dict.fromkeys(key.dataset for key in rows):
        lines += _dataset_lines(dataset, [(k, p) for k, p in rows.items() if k.dataset == dataset], titles, marks)
    lines += [r"\bottomrule", r"\end{tabular}"]
    return table_float("methods", _caption(frame, label, marks), lines, small=True, generator=__name__)


# --------------------------------------------------------------------------------------------
# Writing


def write_methods_table(results: ProfileResults, out_dir: Path, *, results_label: str | None = None) -> list[Path]:
    """Write ``methods.tex`` and ``methods.csv`` (atomically) into ``out_dir``; return their
    paths. ``results_label``: the folder the caption names (default ``results/<profile>``)."""
    out_dir = Path(out_dir)
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability())
    frame = methods_frame(results, published)
    label = results_label or default_results_label(out_dir)
    written = []
    for name, text in (("methods.tex", render_methods_table(frame, results.titles, label)),
                       ("methods.csv", frame.to_csv(index=False))):
        atomic.write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written


__all__ = ["CSV_COLUMNS", "NO_PUBLISHED", "methods_frame", "render_methods_table", "write_methods_table"]
