"""The LaTeX the tables are made of: cells, rows, headers, table floats, captions' shared words.

Shared by the paper's tables (``cdrepro.tables``) and the methods comparison's table
(``cdrepro.comparison.table``), so both print a number, a missing one, a spread, a paired
difference and the best of a group the same way:

- a ``Cell`` is a mean and, after its ``±``, a spread where it has one (ours: the half-width of
  the 95 % interval over seeds; a reference: its published std), printed to 3 decimals;
- "best" (bold) compares values as printed, so printed ties are all bold; a group of fewer than
  two values gets no bold;
- a missing number is ``MISSING`` ("--"); a paired difference whose interval contains 0 is
  marked ``WITHIN_NOISE``;
- names from the data (dataset titles, variant names) go through ``latex_escape``.

The LaTeX needs ``booktabs`` and ``amssymb``; plain ``tabular``, no ``multirow``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cdrepro.results import SCORES, dataset_name
from cdrepro.seed_statistics import interval_note

MISSING = "--"
"""A cell without a number."""
WITHIN_NOISE = r"$^{\approx}$"
"""The mark of a paired difference whose interval contains 0."""


@dataclass(frozen=True)
class Cell:
    """A number as a table shows it: a mean and, after its ``±``, a spread where it has one:
    for ours, the half-width of the 95 % interval over seeds; for a reference, its published
    std (the authors' repository gives no seed count, so no interval can be made of it)."""

    mean: float
    spread: float | None = None
    n_seeds: int | None = None  # ours: the seeds the mean is over

    @property
    def shown(self) -> float:
        """The value as printed, so that "best" agrees with what the reader sees."""
        return float(f"{self.mean:.3f}")

    def latex(self, bold: bool) -> str:
        value = f"{self.mean:.3f}"
        if bold:
            value = rf"\textbf{{{value}}}"
        if self.spread is not None:
            value += rf" $\pm$ {self.spread:.3f}"
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


def bold_by_column(rows: Sequence[Sequence[Cell | None]]) -> list[set[int]]:
    """Per row, the columns where it holds the best value of the block (column-wise ``best``)."""
    bold: list[set[int]] = [set() for _ in rows]
    for column in range(len(rows[0]) if rows else 0):
        for i in best([row[column] for row in rows]):
            bold[i].add(column)
    return bold


def seeds_text(n_seeds: int | None) -> str:
    """A Seeds cell: how many seeds a row is over; "one seed" (or "no shared seed") where it
    has no interval; empty for a reference."""
    return "" if n_seeds is None else interval_note(n_seeds) or str(n_seeds)


def row_seeds(cells: Iterable[Cell | None]) -> int | None:
    """The seeds of a row of our cells (one run group: every cell is over the same seeds)."""
    return next((cell.n_seeds for cell in cells if cell is not None and cell.n_seeds is not None), None)


def half_width(low: Any, high: Any) -> float | None:
    """The half-width of an interval; None where there is none (one seed)."""
    return None if pd.isna(low) or pd.isna(high) else (float(high) - float(low)) / 2


def difference_latex(rec: Mapping[str, Any] | None) -> str:
    """A paired difference's cell: its signed mean $\\pm$ the half-width of its interval,
    ``WITHIN_NOISE`` where that contains 0; one shared seed: the plain signed value (no interval);
    no shared seed, or no pair: "--"."""
    if rec is None or int(rec["n_seeds"]) == 0:
        return MISSING
    if int(rec["n_seeds"]) == 1:
        return f"${rec['mean']:+.3f}$"
    half = (float(rec["ci_high"]) - float(rec["ci_low"])) / 2
    return rf"${rec['mean']:+.3f} \pm {half:.3f}$" + (WITHIN_NOISE if bool(rec["within_noise"]) else "")


def spread_words(csv_name: str) -> str:
    """The captions' words on what follows a ``±`` of ours (``csv_name``: where the rest is)."""
    return (
        r"mean $\pm$ the half-width of its 95\% confidence interval over its seeds, Student t "
        rf"({csv_name} has the std and the interval's ends); one seed: the plain value"
    )


def difference_words(csv_name: str, subject: str) -> str:
    """The captions' sentence on the paired differences (``subject``: which minus which)."""
    return (
        rf"$\Delta$, {subject}: the paired difference over the seeds both rows share, mean $\pm$ the "
        r"half-width of its 95\% confidence interval; $^{\approx}$: within noise (the interval contains 0); "
        rf"a plain $\Delta$: one shared seed, no interval; ``--'': no shared seed. {csv_name} has them all."
    )


def latex_escape(text: str) -> str:
    """Text from the data (dataset and variant names, titles) made safe for LaTeX."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(char, char) for char in text)


def dataset_title(dataset: str, titles: Mapping[str, str]) -> str:
    """``dataset_name`` escaped for LaTeX."""
    return latex_escape(dataset_name(dataset, titles))


def latex_row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + r" \\"


def two_stage_header(
    alignment: str, labels: Sequence[str], final_title: str, held_out: Sequence[str] = ()
) -> list[str]:
    """A table's opening lines: its ``labels`` columns (aligned by ``alignment``), then NMI, ARI
    and ACC under "Backbone" and under ``final_title``; then, if any, the ``held_out`` columns
    (one each) under "Held-out accuracy"."""
    first = len(labels) + 1
    groups = [r"\multicolumn{3}{c}{Backbone}", r"\multicolumn{3}{c}{" + final_title + "}"]
    rules = rf"\cmidrule(lr){{{first}-{first + 2}}}\cmidrule(lr){{{first + 3}-{first + 5}}}"
    if held_out:
        groups.append(rf"\multicolumn{{{len(held_out)}}}{{c}}{{Held-out accuracy}}")
        rules += rf"\cmidrule(lr){{{first + 6}-{first + 5 + len(held_out)}}}"
    return [
        r"\begin{tabular}{" + alignment + "c" * (6 + len(held_out)) + "}",
        r"\toprule",
        latex_row([*labels, *groups]),
        rules,
        latex_row([""] * len(labels) + [m.upper() for m in SCORES] * 2 + list(held_out)),
    ]


def table_float(
    label: int | str,
    caption: str,
    tabular: Sequence[str],
    *,
    generator: str,
    small: bool = False,
    font: str = r"\small",
) -> str:
    """A table environment around a tabular, with caption, label (``tab:cdrepro-<label>``) and
    the packages it needs; ``generator``: the module the comment line names as its writer;
    ``small``: in ``font`` with narrow column gaps."""
    head = [
        f"% Generated by {generator}; needs \\usepackage{{booktabs}} and \\usepackage{{amssymb}}.",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:cdrepro-{label}}}",
    ]
    if small:
        head += [font, r"\setlength{\tabcolsep}{3pt}"]
    return "\n".join(head + list(tabular) + [r"\end{table}"]) + "\n"


def default_results_label(out_dir: Path) -> str:
    """``results/<profile>`` for the usual ``results/<profile>/tables`` output folder."""
    parent = Path(out_dir).parent
    return "/".join(parent.parts[-2:]) if len(parent.parts) >= 2 else str(parent)
