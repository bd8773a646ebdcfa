"""The methods comparison's table as LaTeX (``methods.tex``, "the methods table"): every method
trained here under one protocol, beside its published numbers.

Input: ``cdrepro.comparison.frame.comparison_frame`` of a profile's results for the
``compare_methods`` target (``cdrepro methods-table`` loads them; every run where no run is
tagged for it). Output (``write_comparison_table``): ``methods.tex``, ``methods.csv`` (that frame)
and ``methods_differences.csv`` (``comparison_differences``: the paired differences of our
rows) in ``<results_dir>/<profile>/tables/``.

Layout: one block per dataset, in the frame's order (the pixel baseline, then each method: our
rows, then its published rows, each labelled with its source; a method with nothing published
says so in a row of its own). Columns: the backbone stage (K-means on h) and the method's final
stage, NMI/ARI/ACC, then the held-out accuracies (``HELD_OUT_COLUMNS``: kNN on h and on the final
stage, the linear probe on h; CLD's published kNN in the final stage's, its features named in
the row's stage), mean +- the half-width of its 95 % interval over seeds (``latex.Cell``; the
std and the interval's ends are in the CSV), and the number of seeds ("one seed": a plain
number, no interval). A published number no reachable source confirms carries an asterisk; the
notes of the published rows (CC's STL-10 with its unlabeled images, where CC's paper and CD's
paper disagree, ...) are footnote marks on their source. Bold: the best of our methods per
column within a dataset; the raw-pixel row and the published rows are references, not ranked.

Then a compact table of the paired differences of our rows (``tab:cdrepro-methods-differences``):
one row per dataset, batch size and pair ("CD - SimCLR"; "CD (no_ne) - CD"), its shared seeds,
and the difference at the backbone and the final stage, NMI/ARI/ACC, mean +- half-width,
marked where within noise (``latex.difference_latex``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from cdrepro import atomic
from cdrepro.comparison.frame import NONE, OURS, ROLES, batch_of, comparison_differences, comparison_frame
from cdrepro.latex import (
    Cell,
    bold_by_column,
    dataset_title,
    default_results_label,
    difference_latex,
    difference_words,
    half_width,
    latex_escape,
    latex_row,
    render_cells,
    row_seeds,
    seeds_text,
    spread_words,
    table_float,
    two_stage_header,
)
from cdrepro.metrics import KNN, LINEAR
from cdrepro.published import (
    AUTHORS_REPO,
    CC_PAPER,
    CD_PAPER,
    CLD_PAPER,
    CLD_REPO,
    load_cc_results,
    load_knn_results,
    load_paper_results,
    load_repo_variability,
    published_rows,
)
from cdrepro.results import BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, SCORES, ProfileResults

UNCONFIRMED = r"$^{\ast}$"
HELD_OUT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    (BACKBONE_ROLE, KNN, "kNN h"),
    (FINAL_ROLE, KNN, "kNN final"),
    (BACKBONE_ROLE, LINEAR, "Linear h"),
)
"""The held-out columns after NMI/ARI/ACC: (stage role, metric, header)."""
SCORE_KEYS: tuple[tuple[str, str], ...] = tuple((role, metric) for role in ROLES for metric in SCORES)
"""The clustering table's numeric columns, in order: (stage role, metric)."""
HELD_OUT_KEYS: tuple[tuple[str, str], ...] = tuple((role, metric) for role, metric, _ in HELD_OUT_COLUMNS)
"""The held-out table's numeric columns: a table of their own, as one table of both would not fit a
landscape A4 page (tests/test_tables.py compiles the widest)."""
NOTE_WIDTH = r"0.5\textwidth"
"""The width a "nothing published" row's note wraps at, under the numeric columns."""
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
# The LaTeX table


def _key(rec: Mapping[str, Any]) -> RowKey:
    return RowKey(
        rec["dataset"], rec["method"], rec["variant"], batch_of(rec["batch_size"]), rec["source"], rec["paper_column"]
    )


def table_rows(frame: pd.DataFrame) -> dict[RowKey, pd.DataFrame]:
    """The frame's rows grouped into the table's rows, in order."""
    keys = [_key(rec) for rec in frame.to_dict("records")]
    groups: dict[RowKey, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {key: frame.iloc[rows] for key, rows in groups.items()}


def _cell(rec: Mapping[str, Any]) -> Cell:
    """Ours: the mean, the half-width of its interval over seeds and their count; a published
    number: its std where the source gives one (the authors' repository)."""
    if rec["source"] == OURS:
        return Cell(float(rec["mean"]), half_width(rec["ci_low"], rec["ci_high"]), int(rec["n_seeds"]))
    return Cell(float(rec["mean"]), None if pd.isna(rec["std"]) else float(rec["std"]))


def _cells(part: pd.DataFrame, keys: Sequence[tuple[str, str]] = SCORE_KEYS) -> list[Cell | None]:
    """The row's numbers in the columns ``keys``: backbone then final stage, NMI/ARI/ACC
    (``SCORE_KEYS``), or the held-out accuracies (``HELD_OUT_KEYS``)."""
    cells: list[Cell | None] = []
    for role, metric in keys:
        hit = part[(part["stage_role"] == role) & (part["metric"] == metric)]
        cells.append(None if hit.empty else _cell(hit.iloc[0]))
    return cells


def _unconfirmed(part: pd.DataFrame, keys: Sequence[tuple[str, str]]) -> set[int]:
    """The cell indices (as ``_cells``) of numbers no reachable source confirms."""
    hit = part[~part["confirmed"].astype(bool)]
    pairs = zip(hit["stage_role"], hit["metric"], strict=True)
    return {list(keys).index(pair) for pair in pairs if pair in keys}


def _notes(cells: Iterable[str]) -> list[str]:
    """The distinct notes of some rows (a row's notes are "; "-joined: ``published_rows``)."""
    return list(dict.fromkeys(note for cell in cells for note in str(cell).split("; ") if note))


def note_marks(frame: pd.DataFrame) -> dict[str, str]:
    """A footnote symbol per distinct note of the published rows (a method's "nothing
    published" is said in its row, not marked)."""
    notes = _notes(frame.loc[frame["source"].isin([CD_PAPER, CC_PAPER, AUTHORS_REPO, CLD_PAPER, CLD_REPO]), "note"])
    return {note: _NOTE_SYMBOLS[i % len(_NOTE_SYMBOLS)] for i, note in enumerate(notes)}


def _lead(key: RowKey, part: pd.DataFrame, marks: Mapping[str, str]) -> list[str]:
    """Method (our rows only), batch size, source (with its notes' marks), final stage, seeds
    (our runs only: the pixel baseline is one K-means, a reference like the published rows)."""
    rec = part.iloc[0]
    method = latex_escape(rec["method_label"]) if key.source == OURS else ""
    notes = [note for note in _notes(part["note"]) if note in marks]
    source = latex_escape(rec["source_label"]) + (f"$^{{{','.join(marks[n] for n in notes)}}}$" if notes else "")
    finals = part.loc[part["stage_role"] == ROLES[-1], "stage"]
    batch = "" if key.batch_size is None else str(key.batch_size)
    run = key.source == OURS and key.variant != BASELINE_VARIANT
    seeds = seeds_text(row_seeds(_cells(part))) if run else ""
    return [method, batch, source, latex_escape(finals.iloc[0]) if len(finals) else "", seeds]


def _dataset_lines(
    dataset: str,
    rows: Sequence[tuple[RowKey, pd.DataFrame]],
    titles: Mapping[str, str],
    marks: Mapping[str, str],
    keys: Sequence[tuple[str, str]] = SCORE_KEYS,
) -> list[str]:
    """One dataset's block in the columns ``keys``: our methods' rows ranked per column; the pixel
    baseline and the published rows as printed (references, not contestants). A row with no
    number in these columns is left out (a published kNN row in the clustering table, say)."""
    rows = [(k, p) for k, p in rows if k.source == NONE or any(c is not None for c in _cells(p, keys))]
    if not rows:
        return []
    ranked = [key for key, _ in rows if key.source == OURS and key.variant != BASELINE_VARIANT]
    bold = dict(zip(ranked, bold_by_column([_cells(part, keys) for key, part in rows if key in ranked]), strict=True))
    lines = [r"\midrule"]
    for i, (key, part) in enumerate(rows):
        lead = [dataset_title(dataset, titles) if i == 0 else ""] + _lead(key, part, marks)
        if key.source == NONE:
            text = latex_escape(str(part.iloc[0]["note"]))
            # Wrapped: a note (CLD's, naming its published kNN numbers) can be longer than a page.
            span = rf"\multicolumn{{{len(keys)}}}{{p{{{NOTE_WIDTH}}}}}{{\textit{{{text}}}}}"
            lines.append(latex_row(lead + [span]))
            continue
        cells = render_cells(_cells(part, keys), bold.get(key, set()))
        cells = [c + UNCONFIRMED if j in _unconfirmed(part, keys) else c for j, c in enumerate(cells)]
        lines.append(latex_row(lead + cells))
    return lines


LEAD_LABELS = ["Dataset", "Method", "Batch", "Source", "Final stage", "Seeds"]
LEAD_ALIGNMENT = "llrllr"


def _header() -> list[str]:
    return two_stage_header(LEAD_ALIGNMENT, LEAD_LABELS, "Final stage")


def _held_out_header() -> list[str]:
    first, columns = len(LEAD_LABELS) + 1, [header for _, _, header in HELD_OUT_COLUMNS]
    return [
        r"\begin{tabular}{" + LEAD_ALIGNMENT + "c" * len(columns) + "}",
        r"\toprule",
        latex_row([*LEAD_LABELS, rf"\multicolumn{{{len(columns)}}}{{c}}{{Held-out accuracy}}"]),
        rf"\cmidrule(lr){{{first}-{first + len(columns) - 1}}}",
        latex_row([""] * len(LEAD_LABELS) + columns),
    ]


def held_out_words(metrics: Iterable[Mapping[str, Any]]) -> str:
    """How our held-out accuracies were measured, from the runs' metrics.json (``held_out``): the
    kNN's k and T, and each dataset's split; "" where no run has them (records before issue 22)."""
    knn = sorted({(m["held_out"][KNN]["k"], m["held_out"][KNN]["temperature"]) for m in metrics if "held_out" in m})
    splits = {
        m["dataset"]: m["held_out"]["split"] for m in metrics if "held_out" in m
    }  # one split per dataset: the file every run of it reads
    if not knn:
        return ""
    settings = "; ".join(f"k = {k}, T = {t:g}" for k, t in knn)
    sizes = ", ".join(
        f"{latex_escape(d)} {s['kind']} {s['n_train']:,} / {s['n_test']:,}" for d, s in sorted(splits.items())
    )
    # A run trained on the train split only (train_on: train) records its training set.
    trained_on = (
        "K-means uses every image, and training too except in the runs whose training set is the "
        "train split (training_set in their metrics.json)"
        if any(m.get("training_set") for m in metrics)
        else "training and K-means use every image"
    )
    return (
        f" Held-out accuracy: our weighted kNN ({settings}; cosine, exp(s/T) votes) on h and on the final "
        "stage, and a linear probe (logistic regression on standardised h), fit on a train split and "
        f"scored on its test split ({sizes} images); {trained_on}."
    )


def _held_out_caption(label: str, held_out: str) -> str:
    return (
        rf"The methods of Table~\ref{{tab:cdrepro-methods}} ({latex_escape(label)}) on held-out images."
        + held_out
        + " Beside ours, CLD's own kNN accuracies (its paper's and its repository's) at their setting, on "
        "its 128-d instance projection z, where we ran CLD on their dataset (our CLD's kNN on z, its "
        "stage projector, is in all.csv and MLflow). "
        "Bold: the best of our methods per column within a dataset; marks as in that table."
    )


def _caption(frame: pd.DataFrame, label: str, marks: Mapping[str, str]) -> str:
    notes = " ".join(f"${mark}$: {latex_escape(note)}." for note, mark in marks.items())
    unconfirmed = (
        "" if frame["confirmed"].astype(bool).all() else f" {UNCONFIRMED}: not confirmed by a reachable source."
    )
    return (
        "Every method trained here under one protocol (the same images, backbone, augmentation, "
        rf"optimizer, epochs, seeds and evaluation), from \texttt{{{latex_escape(label)}}}: K-means "
        "NMI/ARI/ACC on the backbone output h and on each method's final stage (CC and CDC: the "
        rf"argmax of their cluster head, no K-means), {spread_words('methods.csv')}. Beside ours, the "
        "published numbers where there are any, each labelled with its source: CD's paper (Tables "
        "2-3) at our CD run's batch size; CC's own paper (its recipe: "
        "batch size 256, no schedule or clipping, 1000 epochs) and CD's paper's CC column, both "
        "shown; the CD authors' repository's no-head model, which is SimCLR's model (mean $\\pm$ "
        "std over several runs). CDC is reconstructed from its abstract (docs/methods.md). Bold: "
        "the best of our methods per column within a dataset; the raw-pixel K-means and the "
        "published rows are references, not ranked. ``--'': no number." + unconfirmed + (" " + notes if notes else "")
    )


ROWS_PER_FLOAT = 30
"""About what a landscape A4 page holds in footnote size under the caption: a longer table (the
paper profile's four datasets are some 40 rows) goes on in a second float rather than off the page."""


def _floats(blocks: Sequence[list[str]]) -> list[list[list[str]]]:
    """Consecutive dataset blocks packed into floats of at most ``ROWS_PER_FLOAT`` lines (a
    longer block alone)."""
    floats: list[list[list[str]]] = [[]]
    for block in blocks:
        if floats[-1] and sum(map(len, floats[-1])) + len(block) > ROWS_PER_FLOAT:
            floats.append([])
        floats[-1].append(block)
    return floats


def _paged(blocks: Sequence[list[str]], header: list[str], name: str, caption: str) -> list[str]:
    """The floats of one table (``tab:cdrepro-<name>``, then ``<name>-2``, ...), its dataset
    blocks packed by ``_floats``; the caption in full on the first only."""
    floats = []
    for i, group in enumerate(_floats(blocks)):
        lines = header + [line for block in group for line in block] + [r"\bottomrule", r"\end{tabular}"]
        text = caption if i == 0 else f"Continued from Table~\\ref{{tab:cdrepro-{name}}} (the same columns and marks)."
        floats.append(
            table_float(
                name if i == 0 else f"{name}-{i + 1}",
                text,
                lines,
                generator=__name__,
                small=True,
                # Scriptsize: 15 columns (six of them "mean ± half-width", three held-out) fit
                # a landscape A4 page only at this size (tests/test_tables.py compiles it).
                font=r"\scriptsize",
            )
        )
    return floats


def render_comparison_table(
    frame: pd.DataFrame,
    titles: Mapping[str, str],
    label: str,
    differences: pd.DataFrame | None = None,
    held_out: str = "",
) -> str:
    """``methods.tex`` from ``comparison_frame``'s rows, then the table of their paired differences
    (``differences``: ``comparison_differences(frame)``, computed when not given); a one-line note
    when there is no run. ``held_out``: ``held_out_words`` of the runs, for the caption."""
    if not (frame["source"] == OURS).any():
        note = f"Methods table: no run in \\texttt{{{latex_escape(label)}}}."
        return f"% Generated by {__name__}.\n\\noindent\\textit{{{note}}}\\par\n"
    rows = table_rows(frame)
    marks = note_marks(frame)

    def blocks_of(keys: Sequence[tuple[str, str]]) -> list[list[str]]:
        by_dataset = (
            _dataset_lines(dataset, [(k, p) for k, p in rows.items() if k.dataset == dataset], titles, marks, keys)
            for dataset in dict.fromkeys(key.dataset for key in rows)
        )
        return [block for block in by_dataset if block]

    floats = _paged(blocks_of(SCORE_KEYS), _header(), "methods", _caption(frame, label, marks))
    held_out_blocks = [b for b in blocks_of(HELD_OUT_KEYS) if any(r"\\" in line and "Ours" in line for line in b)]
    if held_out_blocks:
        floats += _paged(held_out_blocks, _held_out_header(), "methods-held-out", _held_out_caption(label, held_out))
    differences = comparison_differences(frame) if differences is None else differences
    if len(differences):
        blocks = [
            _difference_block(dataset, part, titles) for dataset, part in differences.groupby("dataset", sort=False)
        ]
        floats += _paged(blocks, _difference_header(), "methods-differences", _difference_caption(label))
    return "\n".join(floats)


# --------------------------------------------------------------------------------------------
# The paired differences

# Where a number has no interval the LaTeX says "one seed"; the CSV's note says so too. A
# difference's table is the compact one: the pair, its shared seeds and six cells; its std and
# the interval's ends are in methods_differences.csv.


def _difference_header() -> list[str]:
    return two_stage_header("lrlr", ["Dataset", "Batch", "Difference", "Seeds"], "Final stage")


def _difference_block(dataset: str, part: pd.DataFrame, titles: Mapping[str, str]) -> list[str]:
    """One dataset's pairs, in the table's order: a row per (batch size, pair)."""
    lines = [r"\midrule"]
    keys = ["batch_size", "method", "variant", "vs_method", "vs_variant"]
    for i, (_, pair) in enumerate(part.groupby(keys, sort=False)):
        found = {(r["stage_role"], r["metric"]): r for r in pair.to_dict("records")}
        first = pair.iloc[0]
        lead = [
            dataset_title(dataset, titles) if i == 0 else "",
            str(int(first["batch_size"])),
            f"{latex_escape(first['method_label'])} $-$ {latex_escape(first['vs_method_label'])}",
            seeds_text(int(first["n_seeds"])),
        ]
        cells = [difference_latex(found.get((role, metric))) for role in ROLES for metric in SCORES]
        lines.append(latex_row(lead + cells))
    return lines


def _difference_caption(label: str) -> str:
    return (
        rf"Paired differences of our rows of Table~\ref{{tab:cdrepro-methods}}, from \texttt{{{latex_escape(label)}}}: "
        "every two methods and each ablation against its full model (the variant named as its method), at "
        "the same dataset and batch size; backbone with backbone, final stage with final stage. "
        + difference_words("methods\\_differences.csv", "the first row minus the second")
    )


# --------------------------------------------------------------------------------------------
# Writing


COMPARISON_TABLE_FILES: tuple[str, ...] = ("methods.tex", "methods.csv", "methods_differences.csv")
"""The files of the ``methods_table`` step (``cdrepro methods-table``): what its rule and DVC
stage declare (``cdrepro.steps``)."""


def write_comparison_table(results: ProfileResults, out_dir: Path, *, results_label: str | None = None) -> list[Path]:
    """Write ``methods.tex``, ``methods.csv`` and ``methods_differences.csv`` (atomically) into
    ``out_dir``; return their paths. ``results_label``: the folder the caption names (default ``results/<profile>``)."""
    out_dir = Path(out_dir)
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability(), load_knn_results())
    frame = comparison_frame(results, published)
    differences = comparison_differences(frame)
    label = results_label or default_results_label(out_dir)
    texts = {
        "methods.tex": render_comparison_table(
            frame, results.titles, label, differences, held_out_words(results.metrics)
        ),
        "methods.csv": frame.to_csv(index=False),
        "methods_differences.csv": differences.to_csv(index=False),
    }
    assert tuple(texts) == COMPARISON_TABLE_FILES, "COMPARISON_TABLE_FILES is the declaration: keep them one"
    written = []
    for name, text in texts.items():
        atomic.write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written


__all__ = ["COMPARISON_TABLE_FILES", "render_comparison_table", "write_comparison_table"]
