"""The paper's Tables 2-10 as LaTeX, and every number (ours, the paper's, the authors') in one CSV.

Input: the ``metrics.json`` of each training run and the raw-pixel K-means baseline of each
dataset. Output (``write_tables``): ``table2.tex`` ... ``table10.tex``, ``table_other.tex`` (only a comment
line when every run fits a paper table) and ``all.csv``.

How runs map to tables (the only place this mapping lives):

- Table 2 (backbone) / Table 3 (feature): variant ``cd`` at batch 128 and 256 ("Ours CD-128",
  "Ours CD-256") beside the paper's columns; Table 2 also gets our pixel K-means.
- Tables 4-10: the ablation variants at batch 128 (``ABLATION_TABLES``), with ``cd`` at 128
  as the "all on" row.
- Anything else (another variant name, another batch size) goes to ``table_other.tex`` and to
  ``all.csv``; nothing is dropped.

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
  dataset with a number in our columns (its paper columns "--"). Tables 4-10 get a block per dataset that has at least one of
  the table's non-``cd`` variants at batch 128; a table with no such dataset is still written,
  as a one-line note (so a document that ``\\input``s every table always compiles).
- Several seeds: mean $\\pm$ sample std (ddof=1); one seed: the plain value.
- The LaTeX needs ``booktabs`` and ``amssymb`` (for ``$\\checkmark$``); plain ``tabular``, no
  ``multirow``. Names from the data (dataset titles, variant names) are escaped.
"""

from __future__ import annotations

import io
import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from cdrepro import atomic

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("nmi", "ari", "acc")
STAGES: tuple[str, ...] = ("backbone", "feature")
BASELINE_VARIANT = "kmeans_pixels"
"""The variant name of the raw-pixel K-means rows; a training variant may not use it."""
CD = "cd"
CD_BATCH_SIZES: tuple[int, ...] = (128, 256)
ABLATION_BATCH_SIZE = 128
PAPER_DATASETS: tuple[str, ...] = ("cifar10", "cifar100_20", "stl10", "imagenet10")
PAPER_TITLES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100_20": "CIFAR-100-20",
    "stl10": "STL-10",
    "imagenet10": "ImageNet-10",
}
MISSING = "--"
CHECK = r"$\checkmark$"

OURS_COLUMNS: list[str] = [
    "source", "dataset", "batch_size", "variant", "stage", "feature_stage",
    "metric", "mean", "std", "n_seeds", "seeds", "values",
]
ALL_COLUMNS: list[str] = [
    "source", "table", "dataset", "method", "batch_size", "variant", "stage", "feature_stage",
    "metric", "mean", "std", "n_seeds", "seeds", "values", "note",
]


# --------------------------------------------------------------------------------------------
# The tables' definitions


@dataclass(frozen=True)
class AblationRow:
    """One row of an ablation table: the variant that fills it and its on/off marks."""

    variant: str
    switches: tuple[bool, ...]


@dataclass(frozen=True)
class AblationTable:
    """One of the paper's Tables 4-10: which variants, which stages, how its header reads."""

    number: int
    subject: str
    stages: tuple[str, ...]
    switch_headers: tuple[str, ...]  # LaTeX, written by us, not escaped
    rows: tuple[AblationRow, ...]
    authors_reference: bool = False  # add the authors' repository rows (Tables 6 and 9)

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(row.variant for row in self.rows)


_NE_BN_ROWS = (
    AblationRow("no_ne_no_bn", (False, False)),
    AblationRow("no_bn", (True, False)),
    AblationRow("no_ne", (False, True)),
    AblationRow(CD, (True, True)),
)
_SCHED_ROWS = (AblationRow("no_sched", (False,)), AblationRow(CD, (True,)))
_HEAD_ROWS = (AblationRow("no_head", (False,)), AblationRow(CD, (True,)))
_VIEW_ROWS = (AblationRow("single_view", (False, True)), AblationRow(CD, (True, True)))
_VIEW_HEADERS = (r"Aug.\ $x_1$", r"Aug.\ $x_2$")

ABLATION_TABLES: tuple[AblationTable, ...] = (
    AblationTable(4, "normalized entropy loss (NE) and the last batch normalization (BN)",
                  ("backbone", "feature"), ("NE", "BN"), _NE_BN_ROWS),
    AblationTable(5, "cosine decay schedule and gradient clipping", ("feature",),
                  (r"Sch.\ \& Clip.",), _SCHED_ROWS),
    AblationTable(6, "the feature-level prediction head", ("feature",),
                  ("Feature-level head",), _HEAD_ROWS, authors_reference=True),
    AblationTable(7, "dual-view augmentation ($x_1$ un-augmented vs augmented)", ("feature",),
                  _VIEW_HEADERS, _VIEW_ROWS),
    AblationTable(8, "cosine decay schedule and gradient clipping", ("backbone",),
                  (r"Sch.\ \& Clip.",), _SCHED_ROWS),
    AblationTable(9, "the feature-level prediction head", ("backbone",),
                  ("Feature-level head",), _HEAD_ROWS, authors_reference=True),
    AblationTable(10, "dual-view augmentation ($x_1$ un-augmented vs augmented)", ("backbone",),
                  _VIEW_HEADERS, _VIEW_ROWS),
)

_COMPARISON_SUBJECT = {
    2: "feature extraction: K-means on the backbone output",
    3: "feature disentanglement: K-means on the final (feature predictor) output",
}


def paper_tables(batch_size: int | None, variant: str, stage: str) -> tuple[str, ...]:
    """The tables a row of ours belongs to by the mapping above, or ``("other",)``.

    The one definition of the mapping: ``all.csv``'s ``table`` column and the choice of what
    goes to ``table_other.tex`` both come from here.
    """
    if variant == BASELINE_VARIANT:
        return ("2",) if stage == "backbone" else ("other",)
    found: list[str] = []
    if variant == CD and batch_size in CD_BATCH_SIZES:
        found.append("2" if stage == "backbone" else "3")
    if batch_size == ABLATION_BATCH_SIZE:
        found += [str(t.number) for t in ABLATION_TABLES if variant in t.variants and stage in t.stages]
    return tuple(found) or ("other",)


# --------------------------------------------------------------------------------------------
# Reading the numbers


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    """A key of an input dict, or a KeyError that says which input lacks it."""
    if key not in mapping:
        raise KeyError(f"{where}: missing '{key}'")
    return mapping[key]


def _run_label(run: Mapping[str, Any]) -> str:
    """How an input run is named in error messages."""
    fallback = f"{run.get('dataset')}/bs{run.get('batch_size')}/{run.get('variant')}/s{run.get('seed')}"
    return str(run.get("run_id") or fallback)


def _summarise(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for one value, where a spread is not defined)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, std


def _group_runs(metrics: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int, str], list[Mapping[str, Any]]]:
    """Runs grouped by (dataset, batch size, variant), sorted by seed; duplicate seeds refused.

    Two metrics files for the same seed mean two runs share an identity, a bug upstream that
    averaging would hide.
    """
    groups: dict[tuple[str, int, str], list[Mapping[str, Any]]] = {}
    for run in metrics:
        where = _run_label(run)
        key = (str(_require(run, "dataset", where)), int(_require(run, "batch_size", where)),
               str(_require(run, "variant", where)))
        if key[2] == BASELINE_VARIANT:
            raise ValueError(f"{where}: variant name '{BASELINE_VARIANT}' is reserved for the pixel baseline")
        _require(run, "seed", where)
        groups.setdefault(key, []).append(run)
    for key, runs in groups.items():
        seeds = [int(run["seed"]) for run in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{key}: the same seed appears twice in the metrics: {sorted(seeds)}")
        runs.sort(key=lambda run: int(run["seed"]))
    return groups


def _feature_stage(runs: Sequence[Mapping[str, Any]]) -> str:
    """The layer a group's ``feature`` numbers come from; all seeds must agree."""
    stages = {str(_require(run, "feature_stage", _run_label(run))) for run in runs}
    if len(stages) != 1:
        raise ValueError(f"{_run_label(runs[0])}: seeds disagree on feature_stage: {sorted(stages)}")
    return stages.pop()


def _group_rows(key: tuple[str, int, str], runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The long rows (stage x metric) of one (dataset, batch size, variant) over its seeds."""
    dataset, batch_size, variant = key
    feature_stage = _feature_stage(runs)
    seeds = ";".join(str(int(run["seed"])) for run in runs)
    rows = []
    for stage in STAGES:
        for metric in METRICS:
            values = [float(_require(_require(run, stage, _run_label(run)), metric, f"{_run_label(run)}.{stage}"))
                      for run in runs]
            mean, std = _summarise(values)
            rows.append({
                "source": "ours", "dataset": dataset, "batch_size": batch_size, "variant": variant,
                "stage": stage, "feature_stage": "backbone" if stage == "backbone" else feature_stage,
                "metric": metric, "mean": mean, "std": std, "n_seeds": len(values), "seeds": seeds,
                "values": ";".join(repr(v) for v in values),
            })
    return rows


def _baseline_rows(baselines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw-pixel K-means rows: variant ``kmeans_pixels``, stage ``backbone``, no batch size."""
    rows = []
    seen: set[str] = set()
    for baseline in baselines:
        dataset = str(_require(baseline, "dataset", "baseline"))
        if dataset in seen:
            raise ValueError(f"baseline for '{dataset}' given twice")
        seen.add(dataset)
        pixels = _require(baseline, "pixels", f"baseline {dataset}")
        for metric in METRICS:
            value = float(_require(pixels, metric, f"baseline {dataset}.pixels"))
            rows.append({
                "source": "ours", "dataset": dataset, "batch_size": None, "variant": BASELINE_VARIANT,
                "stage": "backbone", "feature_stage": "pixels", "metric": metric, "mean": value,
                "std": math.nan, "n_seeds": 1, "seeds": "", "values": repr(value),
            })
    return rows


def collect(metrics: list[dict], baselines: list[dict]) -> pd.DataFrame:
    """Our numbers in long format, aggregated over seeds.

    One row per (dataset, batch_size, variant, stage, metric) with mean, sample std (NaN for a
    single seed), n_seeds, the seeds and the per-seed values (``;``-joined, in seed order, so
    no input number is lost), plus one row per (dataset, metric) for the pixel baseline
    (variant ``kmeans_pixels``, stage ``backbone``, batch_size missing). ``feature_stage`` is
    the layer the numbers come from: ``backbone``, ``pixels``, or the run's ``feature_stage``
    (``feature``; ``projector`` for a no-head run).
    """
    rows: list[dict[str, Any]] = []
    for key, runs in sorted(_group_runs(metrics).items()):
        rows += _group_rows(key, runs)
    rows += _baseline_rows(baselines)
    frame = pd.DataFrame(rows, columns=OURS_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame.reset_index(drop=True)


def load_paper_results() -> pd.DataFrame:
    """The paper's Tables 2 and 3 (``references/paper_results.csv``, shipped with the package)."""
    text = resources.files("cdrepro").joinpath("references/paper_results.csv").read_text()
    frame = pd.read_csv(io.StringIO(text), dtype={"table": str, "note": str}, keep_default_na=False,
                        na_values={"nmi": [""], "ari": [""], "acc": [""]})
    return frame


def load_repo_variability() -> pd.DataFrame:
    """Mean and std over several runs from the authors' repository (``references/repo_variability.csv``)."""
    text = resources.files("cdrepro").joinpath("references/repo_variability.csv").read_text()
    return pd.read_csv(io.StringIO(text))


# --------------------------------------------------------------------------------------------
# Cells


@dataclass(frozen=True)
class Cell:
    """A number as a table shows it: a mean, and a std when it summarises several runs."""

    mean: float
    std: float | None = None

    @property
    def shown(self) -> float:
        """The value as printed, so that "best" agrees with what the reader sees."""
        return float(f"{self.mean:.3f}")

    def latex(self, bold: bool) -> str:
        value = f"{self.mean:.3f}"
        if bold:
            value = rf"\textbf{{{value}}}"
        if self.std is not None:
            value += rf" $\pm$ {self.std:.3f}"
        return value


def best(cells: Sequence[Cell | None]) -> set[int]:
    """Indices of the highest printed value (all of them on a tie); none if under two values.

    Higher is better for NMI, ARI and ACC. A lone value is not "best" of anything.
    """
    present = {i: cell.shown for i, cell in enumerate(cells) if cell is not None}
    if len(present) < 2:
        return set()
    top = max(present.values())
    return {i for i, value in present.items() if value == top}


def render_cells(cells: Sequence[Cell | None], bold: set[int]) -> list[str]:
    """The LaTeX of a group of cells, with "--" for a missing one."""
    return [MISSING if cell is None else cell.latex(i in bold) for i, cell in enumerate(cells)]


Key = tuple[str, int | None, str, str, str]  # dataset, batch_size, variant, stage, metric


def ours_cells(ours: pd.DataFrame) -> dict[Key, Cell]:
    """Our aggregated numbers by (dataset, batch size, variant, stage, metric)."""
    cells: dict[Key, Cell] = {}
    for row in ours.itertuples(index=False):
        batch_size = None if pd.isna(row.batch_size) else int(row.batch_size)
        std = None if int(row.n_seeds) < 2 or pd.isna(row.std) else float(row.std)
        cells[(row.dataset, batch_size, row.variant, row.stage, row.metric)] = Cell(float(row.mean), std)
    return cells


def latex_escape(text: str) -> str:
    """Text from the data (dataset and variant names, titles) made safe for LaTeX."""
    replacements = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(char, char) for char in text)


def dataset_order(datasets: Iterable[str], titles: Mapping[str, str]) -> list[str]:
    """The paper's datasets in its order, then those named in params (their order), then the rest."""
    names = set(datasets)
    ordered = [d for d in PAPER_DATASETS if d in names]
    ordered += [d for d in titles if d in names and d not in ordered]
    ordered += sorted(names - set(ordered))
    return ordered


def dataset_name(dataset: str, titles: Mapping[str, str]) -> str:
    """The name a dataset's rows carry: params' title, the paper's name, or the key itself."""
    return titles.get(dataset) or PAPER_TITLES.get(dataset) or dataset


def dataset_title(dataset: str, titles: Mapping[str, str]) -> str:
    """``dataset_name`` escaped for LaTeX."""
    return latex_escape(dataset_name(dataset, titles))


def _row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + r" \\"


def _not_run(missing: Sequence[str]) -> str:
    """The caption sentence naming missing runs (plain text in, escaped out); empty if none."""
    return " Not run: " + latex_escape("; ".join(missing)) + "." if missing else ""


# --------------------------------------------------------------------------------------------
# Tables 2 and 3


@dataclass(frozen=True)
class Column:
    """One numeric column of Table 2 or 3: the paper's method, or one of ours."""

    header: str  # LaTeX
    source: str  # "paper" or "ours"
    method: str = ""  # the paper's method name
    batch_size: int | None = None  # ours
    variant: str = ""  # ours


def _note_marks(paper: pd.DataFrame) -> dict[str, str]:
    """A footnote symbol per distinct note of the paper's methods ("uses extra data": dagger)."""
    symbols = [r"\dagger", r"\ddagger", r"\ast"]
    notes = [note for note in dict.fromkeys(paper["note"]) if note]
    return {note: symbols[i % len(symbols)] for i, note in enumerate(notes)}


def comparison_columns(number: int, paper: pd.DataFrame) -> list[Column]:
    """Table 2's or 3's columns: the paper's, in its order, then ours.

    Our pixel K-means sits next to the paper's K-means (Table 2); our CD-128 and CD-256 go last,
    after the paper's.
    """
    marks = _note_marks(paper)
    rows = paper[paper["table"] == str(number)]
    columns: list[Column] = []
    for method in dict.fromkeys(rows["method"]):
        notes = [n for n in dict.fromkeys(rows.loc[rows["method"] == method, "note"]) if n]
        header = latex_escape(method) + "".join(f"$^{marks[n]}$" for n in notes)
        columns.append(Column(header, "paper", method=method))
        if number == 2 and method == "K-means":
            columns.append(Column("Ours K-means", "ours", variant=BASELINE_VARIANT))
    if number == 2 and not any(c.variant == BASELINE_VARIANT for c in columns):
        columns.append(Column("Ours K-means", "ours", variant=BASELINE_VARIANT))
    columns += [Column(f"Ours CD-{bs}", "ours", batch_size=bs, variant=CD) for bs in CD_BATCH_SIZES]
    return columns


def _comparison_cell(column: Column, dataset: str, stage: str, metric: str,
                     paper: pd.DataFrame, ours: Mapping[Key, Cell]) -> Cell | None:
    """The number in one cell of Table 2 or 3, or None."""
    if column.source == "ours":
        return ours.get((dataset, column.batch_size, column.variant, stage, metric))
    hit = paper[(paper["dataset"] == dataset) & (paper["method"] == column.method) & (paper["stage"] == stage)]
    if hit.empty or pd.isna(hit.iloc[0][metric]):
        return None
    return Cell(float(hit.iloc[0][metric]))


def comparison_datasets(columns: Sequence[Column], ours: Mapping[Key, Cell], titles: Mapping[str, str]) -> list[str]:
    """Datasets with at least one number in our columns of Table 2 or 3.

    A dataset with only unmapped runs (see ``table_other``) gets no all-"--" row here.
    """
    wanted = {(c.batch_size, c.variant) for c in columns if c.source == "ours"}
    found = {key[0] for key in ours if (key[1], key[2]) in wanted}
    return dataset_order(found, titles)


def comparison_missing(number: int, ours: Mapping[Key, Cell], datasets: Iterable[str],
                       titles: Mapping[str, str]) -> list[str]:
    """Our columns left empty in Table 2/3 for the given datasets (plain text)."""
    stage = "backbone" if number == 2 else "feature"
    wanted = [(CD, bs, f"CD-{bs}") for bs in CD_BATCH_SIZES]
    if number == 2:
        wanted = [(BASELINE_VARIANT, None, "pixel K-means")] + wanted
    return [
        f"{name} on {dataset_name(dataset, titles)}"
        for dataset in datasets for variant, batch_size, name in wanted
        if (dataset, batch_size, variant, stage, "nmi") not in ours
    ]


def render_comparison_table(number: int, paper: pd.DataFrame, ours: Mapping[Key, Cell],
                            titles: Mapping[str, str], results_label: str) -> tuple[str, list[str]]:
    """Table 2 or 3 in the paper's layout with our columns added; also what is missing.

    Rows: the paper's datasets (always: their numbers are there), then each other dataset we
    ran, whose paper columns stay "--". Bold: the best of each row over all its numbers.
    """
    stage = "backbone" if number == 2 else "feature"
    columns = comparison_columns(number, paper)
    paper_datasets = list(dict.fromkeys(paper.loc[paper["table"] == str(number), "dataset"]))
    our_datasets = comparison_datasets(columns, ours, titles)
    datasets = paper_datasets + [d for d in our_datasets if d not in paper_datasets]
    missing = comparison_missing(number, ours, our_datasets, titles)

    lines = [
        r"\begin{tabular}{ll" + "c" * len(columns) + "}",
        r"\toprule",
        _row(["Dataset", "Metric"] + [c.header for c in columns]),
    ]
    for dataset in datasets:
        lines.append(r"\midrule")
        for i, metric in enumerate(METRICS):
            cells = [_comparison_cell(c, dataset, stage, metric, paper, ours) for c in columns]
            label = dataset_title(dataset, titles) if i == 0 else ""
            lines.append(_row([label, metric.upper()] + render_cells(cells, best(cells))))
    lines += [r"\bottomrule", r"\end{tabular}"]

    table_notes = set(paper.loc[paper["table"] == str(number), "note"])
    notes = " ".join(f"${mark}$: {latex_escape(note)}." for note, mark in _note_marks(paper).items()
                     if note in table_notes)
    caption = (
        f"Table {number} of the paper ({_COMPARISON_SUBJECT[number]}), NMI/ARI/ACC. "
        r"The paper's columns are from \texttt{reference\_results.csv}; the ``Ours'' columns are "
        rf"from \texttt{{{latex_escape(results_label)}}} (mean $\pm$ sample std where a run has "
        "several seeds). Bold: the best value of each row over all columns, ours included. "
        "``--'': not in the paper (a dataset it did not use) or not run by us."
    )
    caption += (" " + notes if notes else "") + _not_run(missing)
    return _table_float(number, caption, lines, small=True), missing


def _table_float(label: int | str, caption: str, tabular: Sequence[str], small: bool = False) -> str:
    """A table environment around a tabular, with caption, label and the packages it needs."""
    head = [
        "% Generated by cdrepro.tables; needs \\usepackage{booktabs} and \\usepackage{amssymb}.",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:cdrepro-{label}}}",
    ]
    if small:
        head += [r"\small", r"\setlength{\tabcolsep}{3pt}"]
    return "\n".join(head + list(tabular) + [r"\end{table}"]) + "\n"


# --------------------------------------------------------------------------------------------
# Tables 4-10


def ablation_datasets(table: AblationTable, ours: Mapping[Key, Cell], titles: Mapping[str, str]) -> list[str]:
    """Datasets with at least one of the table's non-cd variants at batch 128.

    ``cd`` alone does not open a block: every dataset run for Table 2 has it, and a block of
    "all on" with every ablation missing says nothing.
    """
    ablated = {v for v in table.variants if v != CD}
    found = {key[0] for key in ours
             if key[1] == ABLATION_BATCH_SIZE and key[2] in ablated and key[3] in table.stages}
    return dataset_order(found, titles)


def _ablation_cells(dataset: str, variant: str, stages: Sequence[str], ours: Mapping[Key, Cell]) -> list[Cell | None]:
    return [ours.get((dataset, ABLATION_BATCH_SIZE, variant, stage, metric)) for stage in stages for metric in METRICS]


def _authors_cells(dataset: str, model: str, stages: Sequence[str], repo: pd.DataFrame) -> list[Cell | None] | None:
    """The authors' repository mean +- std for one model, or None if the dataset is not there."""
    cells: list[Cell | None] = []
    for stage in stages:
        hit = repo[(repo["dataset"] == dataset) & (repo["model"] == model) & (repo["stage"] == stage)]
        if hit.empty:
            return None
        cells += [Cell(float(hit.iloc[0][f"{m}_mean"]), float(hit.iloc[0][f"{m}_std"])) for m in METRICS]
    return cells


def _bold_by_column(rows: Sequence[Sequence[Cell | None]]) -> list[set[int]]:
    """Per row, the columns where it holds the best value of the block (column-wise ``best``)."""
    bold: list[set[int]] = [set() for _ in rows]
    for column in range(len(rows[0]) if rows else 0):
        for i in best([row[column] for row in rows]):
            bold[i].add(column)
    return bold


def _ablation_header(table: AblationTable) -> list[str]:
    """Two header rows: the stage groups over their metric columns, then the metric names."""
    lead = ["Dataset"] + (["Source"] if table.authors_reference else []) + list(table.switch_headers)
    first_metric = len(lead) + 1
    groups, rules = [], []
    for i, stage in enumerate(table.stages):
        start = first_metric + 3 * i
        groups.append(rf"\multicolumn{{3}}{{c}}{{{stage.capitalize()}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + 2}}}")
    return [
        _row(lead + groups),
        "".join(rules),
        _row([""] * len(lead) + [m.upper() for m in METRICS] * len(table.stages)),
    ]


def _ablation_block(table: AblationTable, dataset: str, ours: Mapping[Key, Cell], repo: pd.DataFrame,
                    titles: Mapping[str, str]) -> list[str]:
    """The rows of one dataset: our variants (ranked per column), then the authors' references."""
    ours_rows = [_ablation_cells(dataset, row.variant, table.stages, ours) for row in table.rows]
    lines = []
    for i, (row, cells, bold) in enumerate(zip(table.rows, ours_rows, _bold_by_column(ours_rows))):
        lead = [dataset_title(dataset, titles) if i == 0 else ""]
        lead += ["Ours"] if table.authors_reference else []
        lead += [CHECK if on else MISSING for on in row.switches]
        lines.append(_row(lead + render_cells(cells, bold)))
    if table.authors_reference:
        for row in table.rows:
            cells = _authors_cells(dataset, row.variant, table.stages, repo)
            if cells is not None:
                lead = ["", "Authors' repo"] + [CHECK if on else MISSING for on in row.switches]
                lines.append(_row(lead + render_cells(cells, set())))
    return lines


def ablation_missing(table: AblationTable, datasets: Sequence[str], ours: Mapping[Key, Cell],
                     titles: Mapping[str, str]) -> list[str]:
    """The rows of the table's blocks that have no run (plain text)."""
    return [
        f"{row.variant} on {dataset_name(dataset, titles)}"
        for dataset in datasets for row in table.rows
        if all(cell is None for cell in _ablation_cells(dataset, row.variant, table.stages, ours))
    ]


def _feature_layers(table: AblationTable, datasets: Sequence[str], ours_frame: pd.DataFrame) -> list[str]:
    """Caption notes for variants whose Feature numbers come from another layer (no_head: z)."""
    if "feature" not in table.stages:
        return []
    rows = ours_frame[(ours_frame["stage"] == "feature") & ours_frame["dataset"].isin(datasets)
                      & (ours_frame["batch_size"] == ABLATION_BATCH_SIZE).fillna(False)
                      & ours_frame["variant"].isin(table.variants) & (ours_frame["feature_stage"] != "feature")]
    pairs = dict.fromkeys(zip(rows["variant"], rows["feature_stage"]))
    return [f"the Feature numbers of {latex_escape(v)} are its {latex_escape(s)} output" for v, s in pairs]


def render_ablation_table(table: AblationTable, ours_frame: pd.DataFrame, ours: Mapping[Key, Cell],
                          repo: pd.DataFrame, titles: Mapping[str, str], results_label: str) -> tuple[str, list[str]]:
    """One of Tables 4-10 with our numbers; a one-line note when no dataset has its runs."""
    stage_words = " and ".join(table.stages)
    datasets = ablation_datasets(table, ours, titles)
    if not datasets:
        ablated = " or ".join(v for v in table.variants if v != CD)
        note = (f"Table {table.number} ({table.subject}; {stage_words}): not reproduced, no run of "
                f"{latex_escape(ablated)} at batch size {ABLATION_BATCH_SIZE} in "
                f"\\texttt{{{latex_escape(results_label)}}}.")
        text = f"% Generated by cdrepro.tables.\n\\noindent\\textit{{{note}}}\\par\n"
        return text, [f"{ablated} at batch size {ABLATION_BATCH_SIZE} on any dataset"]

    missing = ablation_missing(table, datasets, ours, titles)
    switch_cols = len(table.switch_headers) + (1 if table.authors_reference else 0)
    lines = [r"\begin{tabular}{l" + "c" * switch_cols + "c" * (3 * len(table.stages)) + "}", r"\toprule"]
    lines += _ablation_header(table)
    for dataset in datasets:
        lines.append(r"\midrule")
        lines += _ablation_block(table, dataset, ours, repo, titles)
    lines += [r"\bottomrule", r"\end{tabular}"]

    caption = (
        f"Table {table.number} of the paper: ablation of {table.subject}, {stage_words} stage, "
        f"batch size {ABLATION_BATCH_SIZE}. Our numbers, from \\texttt{{{latex_escape(results_label)}}} "
        r"(mean $\pm$ sample std where a run has several seeds). The paper's own numbers for this "
        r"table are not available in our copy of the paper, so they are not shown. "
        "Bold: the best of our rows per column within a dataset. ``--'' in a number column: not run."
    )
    if table.authors_reference:
        caption += (" Authors' repo: mean $\\pm$ std over several runs published in the authors' "
                    "repository (\\texttt{repo\\_variability.csv}), not ranked.")
    layers = _feature_layers(table, datasets, ours_frame)
    if layers:
        caption += " Note: " + "; ".join(layers) + r" (the paper's ``final layer'')."
    caption += _not_run(missing)
    return _table_float(table.number, caption, lines), missing


# --------------------------------------------------------------------------------------------
# Runs no paper table knows


def other_groups(ours_frame: pd.DataFrame) -> list[tuple[str, int, str, str]]:
    """(dataset, batch size, variant, feature layer) of our training runs no paper table shows."""
    runs = ours_frame[(ours_frame["variant"] != BASELINE_VARIANT) & (ours_frame["stage"] == "feature")]
    return sorted({
        (d, int(b), v, layer)
        for d, b, v, layer in zip(runs["dataset"], runs["batch_size"], runs["variant"], runs["feature_stage"])
        if all(paper_tables(int(b), v, stage) == ("other",) for stage in STAGES)
    })


def render_other_table(ours_frame: pd.DataFrame, ours: Mapping[Key, Cell], titles: Mapping[str, str],
                       results_label: str) -> str | None:
    """Every unmapped run, both stages; None when there is none. No bold: no designed comparison."""
    groups = other_groups(ours_frame)
    if not groups:
        return None
    order = {d: i for i, d in enumerate(dataset_order({g[0] for g in groups}, titles))}
    groups.sort(key=lambda g: (order[g[0]], g[1], g[2]))
    lines = [
        r"\begin{tabular}{lrll" + "c" * 6 + "}",
        r"\toprule",
        _row(["Dataset", "Batch", "Variant", "Feature layer",
              r"\multicolumn{3}{c}{Backbone}", r"\multicolumn{3}{c}{Feature}"]),
        r"\cmidrule(lr){5-7}\cmidrule(lr){8-10}",
        _row([""] * 4 + [m.upper() for m in METRICS] * 2),
        r"\midrule",
    ]
    for dataset, batch_size, variant, layer in groups:
        cells = [ours.get((dataset, batch_size, variant, stage, m)) for stage in STAGES for m in METRICS]
        lead = [dataset_title(dataset, titles), str(batch_size), latex_escape(variant), latex_escape(layer)]
        lines.append(_row(lead + render_cells(cells, set())))
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = (
        "Runs that none of the paper's tables shows (other variants or batch sizes), from "
        rf"\texttt{{{latex_escape(results_label)}}}; mean $\pm$ sample std where a run has several "
        "seeds. ``Feature layer'' is the layer the Feature numbers come from."
    )
    return _table_float("other", caption, lines)


# --------------------------------------------------------------------------------------------
# all.csv


def paper_rows(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers in all.csv's long format.

    CD-128/CD-256 get variant ``cd`` and their batch size, and K-means gets ``kmeans_pixels``,
    so they line up with our rows; ``method`` keeps the paper's column name.
    """
    rows = []
    for rec in paper.itertuples(index=False):
        batch_size, variant = None, ""
        if rec.method.startswith("CD-") and rec.method[3:].isdigit():
            batch_size, variant = int(rec.method[3:]), CD
        elif rec.method == "K-means":
            variant = BASELINE_VARIANT
        for metric in METRICS:
            rows.append({
                "source": "paper", "table": str(rec.table), "dataset": rec.dataset, "method": rec.method,
                "batch_size": batch_size, "variant": variant, "stage": rec.stage, "feature_stage": rec.stage,
                "metric": metric, "mean": float(getattr(rec, metric)), "note": rec.note,
            })
    return pd.DataFrame(rows)


def authors_rows(repo: pd.DataFrame) -> pd.DataFrame:
    """The authors' repository mean +- std in all.csv's long format (batch 128, several runs)."""
    rows = []
    for rec in repo.itertuples(index=False):
        layer = rec.stage if rec.stage == "backbone" or rec.model != "no_head" else "projector"
        tables = ";".join(str(t.number) for t in ABLATION_TABLES if t.authors_reference and rec.stage in t.stages)
        for metric in METRICS:
            rows.append({
                "source": "authors_repo", "table": tables, "dataset": rec.dataset, "method": "",
                "batch_size": ABLATION_BATCH_SIZE, "variant": rec.model, "stage": rec.stage,
                "feature_stage": layer, "metric": metric, "mean": float(getattr(rec, f"{metric}_mean")),
                "std": float(getattr(rec, f"{metric}_std")),
                "note": "authors' repository: mean and std over several runs",
            })
    return pd.DataFrame(rows)


def all_numbers(ours_frame: pd.DataFrame, paper: pd.DataFrame, repo: pd.DataFrame) -> pd.DataFrame:
    """Every number, long format, ``source`` = ours / paper / authors_repo."""
    ours = ours_frame.copy()
    ours["table"] = [";".join(paper_tables(None if pd.isna(b) else int(b), v, s))
                     for b, v, s in zip(ours["batch_size"], ours["variant"], ours["stage"])]
    ours["method"] = ""
    ours["note"] = ""
    frame = pd.concat([ours, paper_rows(paper), authors_rows(repo)], ignore_index=True)
    frame = frame.reindex(columns=ALL_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


# --------------------------------------------------------------------------------------------
# Writing


def default_results_label(out_dir: Path) -> str:
    """``results/<profile>`` for the usual ``results/<profile>/tables`` output folder."""
    parent = Path(out_dir).parent
    return "/".join(parent.parts[-2:]) if len(parent.parts) >= 2 else str(parent)


def write_tables(metrics: list[dict], baselines: list[dict], dataset_titles: dict[str, str], out_dir: Path,
                 *, results_label: str | None = None) -> list[Path]:
    """Write table2.tex ... table10.tex, table_other.tex and all.csv.

    Every file is written atomically. Tables 2 and 3 always have the paper's numbers; Tables
    4-10 without runs are written as a one-line note. Missing runs are logged as warnings and
    named in the captions. ``results_label`` is the folder named in the captions (default:
    the last two parts of ``out_dir``'s parent, i.e. ``results/<profile>``). Returns the paths
    written, in order.
    """
    out_dir = Path(out_dir)
    label = results_label or default_results_label(out_dir)
    ours_frame = collect(metrics, baselines)
    ours = ours_cells(ours_frame)
    paper = load_paper_results()
    repo = load_repo_variability()

    documents: list[tuple[str, str]] = []
    for number in (2, 3):
        text, missing = render_comparison_table(number, paper, ours, dataset_titles, label)
        _warn_missing(number, missing)
        documents.append((f"table{number}.tex", text))
    for table in ABLATION_TABLES:
        text, missing = render_ablation_table(table, ours_frame, ours, repo, dataset_titles, label)
        _warn_missing(table.number, missing)
        documents.append((f"table{table.number}.tex", text))
    other = render_other_table(ours_frame, ours, dataset_titles, label)
    # Always written, so the set of outputs is fixed for Snakemake and DVC.
    documents.append(("table_other.tex", other if other is not None else
                      "% No run outside the paper's tables (other variants or batch sizes).\n"))
    documents.append(("all.csv", all_numbers(ours_frame, paper, repo).to_csv(index=False)))

    written = []
    for name, text in documents:
        path = out_dir / name
        atomic.write_text(path, text)
        written.append(path)
    return written


def _warn_missing(number: int, missing: Sequence[str]) -> None:
    """Say in the log what a table lacks, so a short run is not mistaken for a full one."""
    if missing:
        log.warning("table %d: not run: %s", number, "; ".join(missing))
