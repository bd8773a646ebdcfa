"""The paper's Tables 2-10 as LaTeX, and every number (ours, the paper's, the authors') in one CSV.

Input: a profile's results (``cdrepro.results.ProfileResults``: every run's ``metrics.json``,
the raw-pixel K-means baseline of each dataset, each variant's switches). Output
(``write_tables``): ``table2.tex`` ... ``table10.tex``, ``table_other.tex`` (only a comment line
when every run fits a paper table), ``all.csv`` and ``differences.csv`` (the paired differences
of the tables' runs: ``cdrepro.seed_statistics.paired_differences``).

How runs map to tables (the only place this mapping lives):

- Table 2 (the backbone stage) / Table 3 (the final stage, the paper's "feature"): CD's variant
  ``cd`` at batch 128 and 256 ("Ours CD-128", "Ours CD-256") beside the paper's columns; Table
  2 also gets our pixel K-means. Runs of CC (method ``cc``, any variant) at batch 128 or 256 get
  an "Ours CC-<batch>" column beside the paper's CC column (its final stage in Table 3 is the
  argmax of the cluster head, as in CC's paper); the caption says each one's recipe.
- Tables 4-10: CD's ablation variants at batch 128 (``ABLATION_TABLES``), with ``cd`` at 128
  as the "all on" row. The check/cross marks are the variants' switches in the params
  (``SwitchColumn``); "?" where a variant lacks the switch.
- Anything else (another method, variant name or batch size) goes to ``table_other.tex``
  (backbone and final stage) and to ``all.csv`` (every stage); nothing is dropped.

Choices, so a reader of the tables knows what they see:

- Bold = best. Tables 2-3: the highest value of a row (dataset x metric) over every numeric
  cell, the paper's and ours, as the paper bolds its rows. Tables 4-10: the highest value of a
  column among our rows of one dataset block (the authors' repository rows in Tables 6 and 9
  are shown for reference and not ranked). Values are compared as printed (3 decimals, the
  mean where a cell is mean +- std), so printed ties are all bold; a group with fewer than two
  values gets no bold. No underlining (the paper's second-best underline needs ``soul``).
- Missing data is "--" in its cell. A missing run is also named in the caption ("Not run:
  ...") and logged as a warning, but only for datasets we ran: a paper dataset we never ran
  just shows "--" in our columns. Tables 2-3 list the paper's four datasets, then each other
  dataset with a number in our columns (its paper columns "--"). Tables 4-10 get a block per
  dataset that has at least one of the table's non-``cd`` variants at batch 128; a table with no
  such dataset is still written, as a one-line note (so a document that ``\\input``s every table always compiles).
- Several seeds: mean $\\pm$ the half-width of its 95 % confidence interval over the seeds
  (Student t, ``cdrepro.seed_statistics``), not the std: the interval is what says whether two
  rows differ, the std is not (with 2 seeds the half-width is 9 times the std). The std and the
  interval's ends are in ``all.csv``; one seed: the plain value, "one seed" in the Seeds column
  (Tables 4-10, ``table_other``) and in ``all.csv``'s note. Printing the half-width keeps the
  paper's "a ± b" cells; columns for the interval's ends would double the tables' width.
- Tables 4-10: under each ablation's row, a "$\\Delta$ from all on" row: its paired difference
  from ``cd`` over the seeds both share, with its interval, marked $\\approx$ where the interval
  contains 0 (within noise). ``all.csv`` also holds every paired difference (``source``
  ``difference``), as does ``differences.csv``.
- The LaTeX needs ``booktabs`` and ``amssymb`` (for ``$\\checkmark$``); plain ``tabular``, no
  ``multirow``. Names from the data (dataset titles, variant names) are escaped. Cells, bold,
  escaping, rows, headers and floats are ``cdrepro.latex``'s, shared with the methods table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cdrepro import atomic
from cdrepro.latex import (
    MISSING,
    Cell,
    best,
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
from cdrepro.methods.cc import ContrastiveClustering
from cdrepro.methods.cd import FEATURE_STAGE, ContrastiveDisentangling
from cdrepro.published import (
    DISAGREE_NOTE,
    authors_rows,
    load_cc_results,
    load_paper_results,
    load_repo_variability,
    paper_rows,
    published_rows,
)
from cdrepro.results import BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, ProfileResults, dataset_name, dataset_order
from cdrepro.results import SCORES as METRICS
from cdrepro.seed_statistics import SEED_STATISTICS_COLUMNS, interval_note, paired_differences, with_intervals

log = logging.getLogger(__name__)

CD = ContrastiveDisentangling.name
"""The paper's method, and its variant with every switch on (the variant named as its method)."""
CC = ContrastiveClustering.name
"""The method of the paper's CC column: our runs of it get "Ours CC" columns in Tables 2-3."""
PAPER_CC_COLUMN = "CC"
ROLES: tuple[str, ...] = (BACKBONE_ROLE, FINAL_ROLE)
# The paper's words for the two stages it reports (its "Feature" is a method's final stage).
ROLE_WORDS: dict[str, str] = {BACKBONE_ROLE: "backbone", FINAL_ROLE: "feature"}
CD_BATCH_SIZES: tuple[int, ...] = (128, 256)
ABLATION_BATCH_SIZE = 128
CHECK = r"$\checkmark$"
UNKNOWN = "?"  # the mark of a switch a variant does not have (or a variant the params lack)

DIFFERENCE_SOURCE = "difference"
"""all.csv's ``source`` of a paired difference of two of our rows (its ``vs_*`` columns name the second)."""
ALL_COLUMNS: list[str] = [
    "source",
    "table",
    "dataset",
    "method",
    "batch_size",
    "variant",
    "stage",
    "stage_role",
    "metric",
    *SEED_STATISTICS_COLUMNS,
    "comparison",
    "vs_method",
    "vs_variant",
    "vs_stage",
    "within_noise",
    "note",
]

__all__ = ["ABLATION_TABLES", "TABLE_FILES", "paper_tables", "render_tables", "write_tables"]


# --------------------------------------------------------------------------------------------
# The tables' definitions


def _all_on(*values: Any) -> bool:
    return all(values)


@dataclass(frozen=True)
class SwitchColumn:
    """A check/cross column of an ablation table: on when ``on`` holds for the values of a
    variant's ``switches`` (``cdrepro.results.VariantInfo.switches``, from the params)."""

    header: str  # LaTeX, written by us, not escaped
    switches: tuple[str, ...]
    on: Callable[..., bool] = _all_on

    def mark(self, switches: Mapping[str, Any] | None) -> str:
        if switches is None or any(name not in switches for name in self.switches):
            return UNKNOWN
        return CHECK if self.on(*(switches[name] for name in self.switches)) else MISSING


@dataclass(frozen=True)
class AblationTable:
    """One of the paper's Tables 4-10: which variants (rows, in order), which stages, which
    switch columns. The marks come from each variant's switches."""

    number: int
    subject: str
    roles: tuple[str, ...]
    columns: tuple[SwitchColumn, ...]
    variants: tuple[str, ...]
    authors_reference: bool = False  # add the authors' repository rows (Tables 6 and 9)


_NE_BN = (SwitchColumn("NE", ("entropy",)), SwitchColumn("BN", ("last_bn",)))
_SCHED = (SwitchColumn(r"Sch.\ \& Clip.", ("schedule", "grad_clip")),)
_HEAD = (SwitchColumn("Feature-level head", ("head",)),)
# views 1: view 1 is the un-augmented image; view 2 is augmented either way.
_VIEWS = (
    SwitchColumn(r"Aug.\ $x_1$", ("views",), lambda views: views >= 2),
    SwitchColumn(r"Aug.\ $x_2$", ("views",), lambda views: views >= 1),
)
_NE_BN_VARIANTS = ("no_ne_no_bn", "no_bn", "no_ne", CD)

ABLATION_TABLES: tuple[AblationTable, ...] = (
    AblationTable(
        4,
        "normalized entropy loss (NE) and the last batch normalization (BN)",
        (BACKBONE_ROLE, FINAL_ROLE),
        _NE_BN,
        _NE_BN_VARIANTS,
    ),
    AblationTable(5, "cosine decay schedule and gradient clipping", (FINAL_ROLE,), _SCHED, ("no_sched", CD)),
    AblationTable(
        6, "the feature-level prediction head", (FINAL_ROLE,), _HEAD, ("no_head", CD), authors_reference=True
    ),
    AblationTable(
        7, "dual-view augmentation ($x_1$ un-augmented vs augmented)", (FINAL_ROLE,), _VIEWS, ("single_view", CD)
    ),
    AblationTable(8, "cosine decay schedule and gradient clipping", (BACKBONE_ROLE,), _SCHED, ("no_sched", CD)),
    AblationTable(
        9, "the feature-level prediction head", (BACKBONE_ROLE,), _HEAD, ("no_head", CD), authors_reference=True
    ),
    AblationTable(
        10, "dual-view augmentation ($x_1$ un-augmented vs augmented)", (BACKBONE_ROLE,), _VIEWS, ("single_view", CD)
    ),
)

_STAGE_TABLE_SUBJECT = {
    2: "feature extraction: K-means on the backbone output",
    3: "feature disentanglement: K-means on the final (feature predictor) output",
}
_STAGE_TABLE_ROLE = {2: BACKBONE_ROLE, 3: FINAL_ROLE}


def paper_tables(batch_size: int | None, method: str, variant: str, role: str) -> tuple[str, ...]:
    """The tables a row of ours belongs to by the mapping above, or ``("other",)``.

    The one definition of the mapping: ``all.csv``'s ``table`` column and the choice of what
    goes to ``table_other.tex`` both come from here. The paper's tables are CD's: a run of
    another method is ``other``, as is a stage between the backbone and the final one.
    """
    if variant == BASELINE_VARIANT:
        return ("2",) if role == BACKBONE_ROLE else ("other",)
    if method == CC and batch_size in CD_BATCH_SIZES and role in ROLES:
        return ("2" if role == BACKBONE_ROLE else "3",)
    if method != CD or role not in ROLES:
        return ("other",)
    found: list[str] = []
    if variant == CD and batch_size in CD_BATCH_SIZES:
        found.append("2" if role == BACKBONE_ROLE else "3")
    if batch_size == ABLATION_BATCH_SIZE:
        found += [str(t.number) for t in ABLATION_TABLES if variant in t.variants and role in t.roles]
    return tuple(found) or ("other",)


# --------------------------------------------------------------------------------------------
# What every table reads (the cells themselves: ``cdrepro.latex``)


Key = tuple[str, int | None, str, str, str]  # dataset, batch_size, variant, stage role, metric


def ours_cells(ours: pd.DataFrame) -> dict[Key, Cell]:
    """Our aggregated numbers by (dataset, batch size, variant, stage role, metric): the backbone
    and final stages (the tables show no stage between)."""
    cells: dict[Key, Cell] = {}
    for row in ours[ours["stage_role"].isin(ROLES)].itertuples(index=False):
        batch_size = None if pd.isna(row.batch_size) else int(row.batch_size)
        cells[(row.dataset, batch_size, row.variant, row.stage_role, row.metric)] = Cell(
            float(row.mean), half_width(row.ci_low, row.ci_high), int(row.n_seeds)
        )
    return cells


@dataclass(frozen=True)
class TableInputs:
    """What every table reads: the profile's results, the paper's and the authors' numbers, and
    the results folder the captions name."""

    results: ProfileResults
    paper: pd.DataFrame
    repo: pd.DataFrame
    label: str

    @property
    def titles(self) -> Mapping[str, str]:
        return self.results.titles

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Our long frame, with the interval of each mean (``seed_statistics.with_intervals``)."""
        return with_intervals(self.results.frame)

    @cached_property
    def paper_cells(self) -> dict[Key, Cell]:
        """The cells of Tables 2-10: CD's and CC's runs and the pixel baselines (a variant is of
        one method, so CC's variants never meet CD's in the ablation tables)."""
        frame = self.frame
        return ours_cells(frame[frame["method"].isin([CD, CC]) | (frame["variant"] == BASELINE_VARIANT)])

    @cached_property
    def cc_runs(self) -> list[tuple[int, str]]:
        """(batch size, variant) of our CC runs at the paper's batch sizes: the "Ours CC" columns."""
        frame = self.frame
        runs = frame[(frame["method"] == CC) & frame["batch_size"].isin(CD_BATCH_SIZES).fillna(False)]
        return sorted({(int(b), str(v)) for b, v in zip(runs["batch_size"], runs["variant"], strict=True)})

    @cached_property
    def all_cells(self) -> dict[Key, Cell]:
        return ours_cells(self.frame)

    @cached_property
    def differences(self) -> pd.DataFrame:
        """Every paired difference of our runs (``seed_statistics.paired_differences``)."""
        return paired_differences(self.frame, ROLES)

    @cached_property
    def difference_records(self) -> dict[tuple[str, int, str, str, str, str], dict[str, Any]]:
        """The differences by (dataset, batch size, variant, vs variant, stage role, metric)."""
        return {
            (r["dataset"], int(r["batch_size"]), r["variant"], r["vs_variant"], r["stage_role"], r["metric"]): r
            for r in self.differences.to_dict("records")
        }


def _not_run(missing: Sequence[str]) -> str:
    """The caption sentence naming missing runs (plain text in, escaped out); empty if none."""
    return " Not run: " + latex_escape("; ".join(missing)) + "." if missing else ""


# --------------------------------------------------------------------------------------------
# Tables 2 and 3, the stage tables: one stage (the backbone; the final), the paper's columns and ours


@dataclass(frozen=True)
class Column:
    """One numeric column of Table 2 or 3: the paper's method, or one of ours."""

    header: str  # LaTeX
    source: str  # "paper" or "ours"
    method: str = ""  # the paper's method name
    batch_size: int | None = None  # ours
    variant: str = ""  # ours
    name: str = ""  # ours, plain text: how "Not run" names the column
    required: bool = True  # ours: a missing cell is named under "Not run" (the "Ours CC" extras are not)


def _note_marks(paper: pd.DataFrame) -> dict[str, str]:
    """A footnote symbol per distinct note of the paper's methods ("uses extra data": dagger)."""
    symbols = [r"\dagger", r"\ddagger", r"\ast"]
    notes = [note for note in dict.fromkeys(paper["note"]) if note]
    return {note: symbols[i % len(symbols)] for i, note in enumerate(notes)}


def _cc_column(batch_size: int, variant: str) -> Column:
    """ "Ours CC-128"; a CC variant other than ``cc`` is named: "Ours CC-256 (cc_published)"."""
    name = f"CC-{batch_size}" + ("" if variant == CC else f" ({variant})")
    return Column(
        "Ours " + latex_escape(name), "ours", batch_size=batch_size, variant=variant, name=name, required=False
    )


def stage_table_columns(number: int, paper: pd.DataFrame, cc_runs: Sequence[tuple[int, str]] = ()) -> list[Column]:
    """Table 2's or 3's columns: the paper's, in its order, then ours.

    Our pixel K-means sits next to the paper's K-means (Table 2), our CC runs (``cc_runs``:
    batch size, variant) next to the paper's CC; our CD-128 and CD-256 go last, after the paper's.
    """
    marks = _note_marks(paper)
    rows = paper[paper["table"] == str(number)]
    pixels = Column("Ours K-means", "ours", variant=BASELINE_VARIANT, name="pixel K-means")
    ours_cc = [_cc_column(bs, variant) for bs, variant in cc_runs]
    columns: list[Column] = []
    for method in dict.fromkeys(rows["method"]):
        notes = [n for n in dict.fromkeys(rows.loc[rows["method"] == method, "note"]) if n]
        header = latex_escape(method) + "".join(f"$^{marks[n]}$" for n in notes)
        columns.append(Column(header, "paper", method=method))
        if number == 2 and method == "K-means":
            columns.append(pixels)
        if method == PAPER_CC_COLUMN:
            columns += ours_cc
    if number == 2 and pixels not in columns:
        columns.append(pixels)
    columns += [c for c in ours_cc if c not in columns]  # a paper copy without its CC column
    columns += [Column(f"Ours CD-{bs}", "ours", batch_size=bs, variant=CD, name=f"CD-{bs}") for bs in CD_BATCH_SIZES]
    return columns


def _stage_table_cell(
    column: Column, dataset: str, role: str, metric: str, paper: pd.DataFrame, ours: Mapping[Key, Cell]
) -> Cell | None:
    """The number in one cell of Table 2 or 3, or None."""
    if column.source == "ours":
        return ours.get((dataset, column.batch_size, column.variant, role, metric))
    hit = paper[
        (paper["dataset"] == dataset) & (paper["method"] == column.method) & (paper["stage"] == ROLE_WORDS[role])
    ]
    if hit.empty or pd.isna(hit.iloc[0][metric]):
        return None
    return Cell(float(hit.iloc[0][metric]))


def stage_table_datasets(columns: Sequence[Column], ours: Mapping[Key, Cell], titles: Mapping[str, str]) -> list[str]:
    """Datasets with at least one number in our columns of Table 2 or 3.

    A dataset with only unmapped runs (see ``table_other``) gets no all-"--" row here.
    """
    wanted = {(c.batch_size, c.variant) for c in columns if c.source == "ours"}
    found = {key[0] for key in ours if (key[1], key[2]) in wanted}
    return dataset_order(found, titles)


def stage_table_missing(
    number: int, columns: Sequence[Column], ours: Mapping[Key, Cell], datasets: Iterable[str], titles: Mapping[str, str]
) -> list[str]:
    """Our required columns left empty in Table 2/3 for the given datasets (plain text)."""
    role = _STAGE_TABLE_ROLE[number]
    return [
        f"{column.name} on {dataset_name(dataset, titles)}"
        for dataset in datasets
        for column in columns
        if column.required
        and column.source == "ours"
        and (dataset, column.batch_size, column.variant, role, "nmi") not in ours
    ]


def render_stage_table(number: int, inputs: TableInputs) -> tuple[str, list[str]]:
    """Table 2 or 3 in the paper's layout with our columns added; also what is missing.

    Rows: the paper's datasets (always: their numbers are there), then each other dataset we
    ran, whose paper columns stay "--". Bold: the best of each row over all its numbers.
    """
    paper, ours, titles = inputs.paper, inputs.paper_cells, inputs.titles
    role = _STAGE_TABLE_ROLE[number]
    columns = stage_table_columns(number, paper, inputs.cc_runs)
    paper_datasets = list(dict.fromkeys(paper.loc[paper["table"] == str(number), "dataset"]))
    our_datasets = stage_table_datasets(columns, ours, titles)
    datasets = paper_datasets + [d for d in our_datasets if d not in paper_datasets]
    missing = stage_table_missing(number, columns, ours, our_datasets, titles)

    lines = [
        r"\begin{tabular}{ll" + "c" * len(columns) + "}",
        r"\toprule",
        latex_row(["Dataset", "Metric"] + [c.header for c in columns]),
    ]
    for dataset in datasets:
        lines.append(r"\midrule")
        for i, metric in enumerate(METRICS):
            cells = [_stage_table_cell(c, dataset, role, metric, paper, ours) for c in columns]
            label = dataset_title(dataset, titles) if i == 0 else ""
            lines.append(latex_row([label, metric.upper()] + render_cells(cells, best(cells))))
    lines += [r"\bottomrule", r"\end{tabular}"]

    table_notes = set(paper.loc[paper["table"] == str(number), "note"])
    notes = " ".join(
        f"${mark}$: {latex_escape(note)}." for note, mark in _note_marks(paper).items() if note in table_notes
    )
    caption = (
        f"Table {number} of the paper ({_STAGE_TABLE_SUBJECT[number]}), NMI/ARI/ACC. "
        r"The paper's columns are from \texttt{cdrepro/references/paper\_results.csv}; the ``Ours'' columns are "
        rf"from \texttt{{{latex_escape(inputs.label)}}} ({spread_words('all.csv')}). "
        "Bold: the best value of each row over all columns, ours included. "
        "``--'': not in the paper (a dataset it did not use) or not run by us."
    )
    caption += (" " + notes if notes else "") + _cc_caption(number, inputs) + _not_run(missing)
    return table_float(number, caption, lines, generator=__name__, small=True), missing


def _recipe(switches: Mapping[str, Any] | None) -> str:
    """A CC run's recipe in words, from its variant's switches."""
    if switches is None:
        return "a variant the params do not define"
    schedule, clip = switches.get("schedule"), switches.get("grad_clip")
    if schedule and clip:
        return "CD's protocol (cosine schedule and gradient clipping)"
    if not schedule and not clip:
        return "CC's published recipe (no schedule, no clipping)"
    return f"schedule {'on' if schedule else 'off'}, gradient clipping {'on' if clip else 'off'}"


def _cc_disagreements(inputs: TableInputs) -> list[str]:
    """The datasets (titles) where CC's own paper and CD's paper's CC column differ."""
    rows = published_rows(inputs.paper, load_cc_results(), inputs.repo)
    hit = rows[rows["note"].str.contains(DISAGREE_NOTE, regex=False)]
    return [dataset_name(d, inputs.titles) for d in dataset_order(set(hit["dataset"]), inputs.titles)]


def _cc_caption(number: int, inputs: TableInputs) -> str:
    """What each "Ours CC" column is: its variant, batch size and recipe (empty if none)."""
    if not inputs.cc_runs:
        return ""
    described = []
    for batch_size, variant in inputs.cc_runs:
        info = inputs.results.variants.get(variant)
        described.append(
            rf"Ours {latex_escape(_cc_column(batch_size, variant).name)} is our CC (variant "
            rf"\texttt{{{latex_escape(variant)}}}) at batch size {batch_size} under "
            + _recipe(info.switches if info is not None else None)
        )
    its = "Its" if len(described) == 1 else "Their"
    if number == 2:
        stage = (
            f" {its} numbers here are K-means on the backbone output h. The paper's CC column "
            "exists only in CD's paper (CC's paper reports no K-means on h)."
        )
    else:
        differ = " and ".join(_cc_disagreements(inputs))
        stage = (
            f" {its} numbers here are CC's final stage, the argmax of its cluster head (as in CC's "
            "paper), not K-means. The paper's CC column is CC as CD's paper reports it"
        )
        stage += (
            f"; CC's own paper (batch size 256, 1000 epochs) gives other numbers on {latex_escape(differ)} "
            "(methods.tex shows both)."
            if differ
            else "."
        )
    return " " + "; ".join(described) + ", with this profile's images, epochs and evaluation." + stage


# --------------------------------------------------------------------------------------------
# Tables 4-10


def ablation_datasets(table: AblationTable, ours: Mapping[Key, Cell], titles: Mapping[str, str]) -> list[str]:
    """Datasets with at least one of the table's non-cd variants at batch 128.

    ``cd`` alone does not open a block: every dataset run for Table 2 has it, and a block of
    "all on" with every ablation missing says nothing.
    """
    ablated = {v for v in table.variants if v != CD}
    found = {key[0] for key in ours if key[1] == ABLATION_BATCH_SIZE and key[2] in ablated and key[3] in table.roles}
    return dataset_order(found, titles)


def _ablation_cells(dataset: str, variant: str, roles: Sequence[str], ours: Mapping[Key, Cell]) -> list[Cell | None]:
    return [ours.get((dataset, ABLATION_BATCH_SIZE, variant, role, metric)) for role in roles for metric in METRICS]


def _authors_cells(dataset: str, model: str, roles: Sequence[str], repo: pd.DataFrame) -> list[Cell | None] | None:
    """The authors' repository mean +- std for one model, or None if the dataset is not there."""
    cells: list[Cell | None] = []
    for role in roles:
        hit = repo[(repo["dataset"] == dataset) & (repo["model"] == model) & (repo["stage"] == ROLE_WORDS[role])]
        if hit.empty:
            return None
        cells += [Cell(float(hit.iloc[0][f"{m}_mean"]), float(hit.iloc[0][f"{m}_std"])) for m in METRICS]
    return cells


def _ablation_header(table: AblationTable) -> list[str]:
    """Two header rows: the stage groups over their metric columns, then the metric names."""
    lead = ["Dataset"] + (["Source"] if table.authors_reference else []) + [c.header for c in table.columns]
    lead.append("Seeds")
    first_metric = len(lead) + 1
    groups, rules = [], []
    for i, role in enumerate(table.roles):
        start = first_metric + 3 * i
        groups.append(rf"\multicolumn{{3}}{{c}}{{{ROLE_WORDS[role].capitalize()}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + 2}}}")
    return [
        latex_row(lead + groups),
        "".join(rules),
        latex_row([""] * len(lead) + [m.upper() for m in METRICS] * len(table.roles)),
    ]


def _marks(table: AblationTable, variant: str, inputs: TableInputs) -> list[str]:
    """A variant's check/cross marks, from its switches in the params."""
    info = inputs.results.variants.get(variant)
    return [column.mark(info.switches if info is not None else None) for column in table.columns]


def _difference_line(table: AblationTable, dataset: str, variant: str, inputs: TableInputs) -> str | None:
    """The "Delta from all on" row under an ablation's row: its paired difference from ``cd``
    per column; None where the two have no column in common (either was not run)."""
    found = [
        inputs.difference_records.get((dataset, ABLATION_BATCH_SIZE, variant, CD, role, metric))
        for role in table.roles
        for metric in METRICS
    ]
    shared = next((int(rec["n_seeds"]) for rec in found if rec is not None), None)
    if variant == CD or shared is None:
        return None
    width = len(table.columns) + (1 if table.authors_reference else 0)
    lead = ["", rf"\multicolumn{{{width}}}{{r}}{{$\Delta$ from all on}}", seeds_text(shared)]
    return latex_row(lead + [difference_latex(rec) for rec in found])


def _ablation_block(table: AblationTable, dataset: str, inputs: TableInputs) -> list[str]:
    """The rows of one dataset: our variants (ranked per column), each ablation followed by its
    difference from the all-on row, then the authors' references."""
    ours_rows = [_ablation_cells(dataset, variant, table.roles, inputs.paper_cells) for variant in table.variants]
    lines = []
    for i, (variant, cells, bold) in enumerate(zip(table.variants, ours_rows, bold_by_column(ours_rows), strict=True)):
        lead = [dataset_title(dataset, inputs.titles) if i == 0 else ""]
        lead += ["Ours"] if table.authors_reference else []
        lead += [*_marks(table, variant, inputs), seeds_text(row_seeds(cells))]
        lines.append(latex_row(lead + render_cells(cells, bold)))
        difference = _difference_line(table, dataset, variant, inputs)
        lines += [difference] if difference else []
    if table.authors_reference:
        for variant in table.variants:
            authors = _authors_cells(dataset, variant, table.roles, inputs.repo)
            if authors is not None:
                lead = ["", "Authors' repo", *_marks(table, variant, inputs), ""]
                lines.append(latex_row(lead + render_cells(authors, set())))
    return lines


def ablation_missing(
    table: AblationTable, datasets: Sequence[str], ours: Mapping[Key, Cell], titles: Mapping[str, str]
) -> list[str]:
    """The rows of the table's blocks that have no run (plain text)."""
    return [
        f"{variant} on {dataset_name(dataset, titles)}"
        for dataset in datasets
        for variant in table.variants
        if all(cell is None for cell in _ablation_cells(dataset, variant, table.roles, ours))
    ]


def _final_stages(table: AblationTable, datasets: Sequence[str], frame: pd.DataFrame) -> list[str]:
    """Caption notes for variants whose Feature numbers come from another stage than CD's feature
    stage (no_head: its projector output z)."""
    if FINAL_ROLE not in table.roles:
        return []
    rows = frame[
        (frame["stage_role"] == FINAL_ROLE)
        & frame["dataset"].isin(datasets)
        & (frame["method"] == CD)
        & (frame["batch_size"] == ABLATION_BATCH_SIZE).fillna(False)
        & frame["variant"].isin(table.variants)
        & (frame["stage"] != FEATURE_STAGE)
    ]
    pairs = dict.fromkeys(zip(rows["variant"], rows["stage"], strict=True))
    return [f"the Feature numbers of {latex_escape(v)} are its {latex_escape(s)} output" for v, s in pairs]


def render_ablation_table(table: AblationTable, inputs: TableInputs) -> tuple[str, list[str]]:
    """One of Tables 4-10 with our numbers; a one-line note when no dataset has its runs."""
    stage_words = " and ".join(ROLE_WORDS[role] for role in table.roles)
    label = latex_escape(inputs.label)
    datasets = ablation_datasets(table, inputs.paper_cells, inputs.titles)
    if not datasets:
        ablated = " or ".join(v for v in table.variants if v != CD)
        note = (
            f"Table {table.number} ({table.subject}; {stage_words}): not reproduced, no run of "
            f"{latex_escape(ablated)} at batch size {ABLATION_BATCH_SIZE} in \\texttt{{{label}}}."
        )
        text = f"% Generated by cdrepro.tables.\n\\noindent\\textit{{{note}}}\\par\n"
        return text, [f"{ablated} at batch size {ABLATION_BATCH_SIZE} on any dataset"]

    missing = ablation_missing(table, datasets, inputs.paper_cells, inputs.titles)
    switch_cols = len(table.columns) + (1 if table.authors_reference else 0)
    lines = [r"\begin{tabular}{l" + "c" * switch_cols + "r" + "c" * (3 * len(table.roles)) + "}", r"\toprule"]
    lines += _ablation_header(table)
    for dataset in datasets:
        lines.append(r"\midrule")
        lines += _ablation_block(table, dataset, inputs)
    lines += [r"\bottomrule", r"\end{tabular}"]

    caption = (
        f"Table {table.number} of the paper: ablation of {table.subject}, {stage_words} stage, "
        f"batch size {ABLATION_BATCH_SIZE}. Our numbers, from \\texttt{{{label}}} "
        f"({spread_words('all.csv')}). The paper's own numbers for this "
        r"table are not available in our copy of the paper, so they are not shown. "
        "Bold: the best of our rows per column within a dataset. ``--'' in a number column: not run. "
        + difference_words("differences.csv", "under each ablation, the ablation minus the all-on row")
    )
    if table.authors_reference:
        caption += (
            " Authors' repo: mean $\\pm$ std over several runs published in the authors' "
            "repository (\\texttt{repo\\_variability.csv}), not ranked."
        )
    notes = _final_stages(table, datasets, inputs.frame)
    if notes:
        caption += " Note: " + "; ".join(notes) + r" (the paper's ``final layer'')."
    caption += _not_run(missing)
    return table_float(table.number, caption, lines, generator=__name__), missing


# --------------------------------------------------------------------------------------------
# Runs no paper table knows

OtherGroup = tuple[str, int, str, str, str]  # dataset, batch size, method, variant, final stage


def other_groups(frame: pd.DataFrame) -> list[OtherGroup]:
    """Our training runs no paper table shows, by their final stage's rows."""
    runs = frame[(frame["variant"] != BASELINE_VARIANT) & (frame["stage_role"] == FINAL_ROLE)]
    return sorted(
        {
            (d, int(b), m, v, stage)
            for d, b, m, v, stage in zip(
                runs["dataset"], runs["batch_size"], runs["method"], runs["variant"], runs["stage"], strict=True
            )
            if all(paper_tables(int(b), m, v, role) == ("other",) for role in ROLES)
        }
    )


def render_other_table(inputs: TableInputs) -> str | None:
    """Every unmapped run, its backbone and final stage (every stage is in all.csv); None when
    there is none. No bold: no designed comparison."""
    groups = other_groups(inputs.frame)
    if not groups:
        return None
    order = {d: i for i, d in enumerate(dataset_order({g[0] for g in groups}, inputs.titles))}
    groups.sort(key=lambda g: (order[g[0]], g[1], g[2], g[3]))
    lines = two_stage_header("lrlllr", ["Dataset", "Batch", "Method", "Variant", "Final stage", "Seeds"], "Final")
    lines.append(r"\midrule")
    for dataset, batch_size, method, variant, stage in groups:
        cells = [inputs.all_cells.get((dataset, batch_size, variant, role, m)) for role in ROLES for m in METRICS]
        lead = [
            dataset_title(dataset, inputs.titles),
            str(batch_size),
            latex_escape(inputs.results.method_label(variant, method)),
            latex_escape(variant),
            latex_escape(stage),
            seeds_text(row_seeds(cells)),
        ]
        lines.append(latex_row(lead + render_cells(cells, set())))
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = (
        "Runs that none of the paper's tables shows (other methods, variants or batch sizes), from "
        rf"\texttt{{{latex_escape(inputs.label)}}}; {spread_words('all.csv')}. ``Final stage'' is the "
        "stage the Final numbers come from; all.csv has every stage, differences.csv their paired differences."
    )
    return table_float("other", caption, lines, generator=__name__)


# --------------------------------------------------------------------------------------------
# all.csv


def _authors_with_tables(repo: pd.DataFrame) -> pd.DataFrame:
    """The authors' rows (``results.authors_rows``) with the tables that show them."""
    rows = authors_rows(repo)
    rows.insert(
        0,
        "table",
        [
            ";".join(str(t.number) for t in ABLATION_TABLES if t.authors_reference and role in t.roles)
            for role in rows["stage_role"]
        ],
    )
    return rows


def _tables_of(rows: pd.DataFrame) -> list[str]:
    """``all.csv``'s ``table`` cell of each of our rows (of a difference: its first row's tables);
    empty for a held-out accuracy, which no paper table shows (the methods table does)."""
    return [
        ";".join(paper_tables(None if pd.isna(b) else int(b), m, v, r)) if metric in METRICS else ""
        for b, m, v, r, metric in zip(
            rows["batch_size"], rows["method"], rows["variant"], rows["stage_role"], rows["metric"], strict=True
        )
    ]


def all_numbers(
    frame: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame, differences: pd.DataFrame
) -> pd.DataFrame:
    """Every number, long format, ``source`` = ours / difference / paper / authors_repo.
    ``differences``: ``seed_statistics.paired_differences`` of ``frame``; our rows say "one
    seed" in ``note`` where they have no interval."""
    ours = frame.assign(table=_tables_of(frame), note=[interval_note(n) for n in frame["n_seeds"]])
    paired = differences.assign(source=DIFFERENCE_SOURCE, table=_tables_of(differences))
    parts = [part for part in (ours, paired) if len(part)]  # concat warns on empty frames
    merged = pd.concat([*parts, paper_rows(paper), _authors_with_tables(repo)], ignore_index=True)
    merged = merged.reindex(columns=ALL_COLUMNS)
    merged["batch_size"] = merged["batch_size"].astype("Int64")
    merged["n_seeds"] = merged["n_seeds"].astype("Int64")
    return merged


# --------------------------------------------------------------------------------------------
# Writing


def _stage_table(number: int) -> Callable[[TableInputs], str]:
    def render(inputs: TableInputs) -> str:
        text, missing = render_stage_table(number, inputs)
        _warn_missing(number, missing)
        return text

    return render


def _ablation(table: AblationTable) -> Callable[[TableInputs], str]:
    def render(inputs: TableInputs) -> str:
        text, missing = render_ablation_table(table, inputs)
        _warn_missing(table.number, missing)
        return text

    return render


def _other(inputs: TableInputs) -> str:
    other = render_other_table(inputs)
    # Always written, so the set of outputs is fixed for Snakemake and DVC.
    return other if other is not None else "% No run outside the paper's tables (other variants or batch sizes).\n"


TABLE_FILES: dict[str, Callable[[TableInputs], str]] = {
    **{f"table{number}.tex": _stage_table(number) for number in (2, 3)},
    **{f"table{table.number}.tex": _ablation(table) for table in ABLATION_TABLES},
    "table_other.tex": _other,
    "all.csv": lambda inputs: all_numbers(inputs.frame, inputs.paper, inputs.repo, inputs.differences).to_csv(
        index=False
    ),
    "differences.csv": lambda inputs: inputs.differences.to_csv(index=False),
}
"""The tables step's files and what writes each: the declaration the workflow's rule, DVC's
stage (``cdrepro.steps``) and ``write_tables`` all read. A new table is one entry here."""


def render_tables(inputs: TableInputs) -> list[tuple[str, str]]:
    """(file name, text) of every file of ``TABLE_FILES``, in order; what a table lacks is
    logged as a warning."""
    return [(name, render(inputs)) for name, render in TABLE_FILES.items()]


def write_tables(results: ProfileResults, out_dir: Path, *, results_label: str | None = None) -> list[Path]:
    """Write the files of ``TABLE_FILES`` (table2.tex ... table10.tex, table_other.tex, all.csv,
    differences.csv) of a profile's results.

    Every file is written atomically. Tables 2 and 3 always have the paper's numbers; Tables
    4-10 without runs are written as a one-line note. Missing runs are logged as warnings and
    named in the captions. ``results_label`` is the folder named in the captions (default:
    the last two parts of ``out_dir``'s parent, i.e. ``results/<profile>``). Returns the paths
    written, in order.
    """
    out_dir = Path(out_dir)
    inputs = TableInputs(
        results, load_paper_results(), load_repo_variability(), results_label or default_results_label(out_dir)
    )
    written = []
    for name, text in render_tables(inputs):
        path = out_dir / name
        atomic.write_text(path, text)
        written.append(path)
    return written


def _warn_missing(number: int, missing: Sequence[str]) -> None:
    """Say in the log what a table lacks, so a short run is not mistaken for a full one."""
    if missing:
        log.warning("table %d: not run: %s", number, "; ".join(missing))
