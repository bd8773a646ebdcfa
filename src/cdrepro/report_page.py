"""The first screen of the Snakemake report (``snakemake --report``, ``make report``).

Snakemake renders the workflow description (``workflow/report/workflow.rst``) with Jinja, then
docutils, and shows it first, beside the rule graph. Jinja there sees the params and the
report's files but cannot read a CSV, so the description's reST directives are defined here; the
Snakefile imports this module, which registers them with docutils:

- ``.. cdrepro-methods-table:: PATH``: the methods table from ``tables/methods.csv`` (the
  methods table's long format: one row per number and source), as one HTML table laid out as
  ``methods.tex``: per dataset, a row per method, variant, batch size and source; the backbone's
  and the final stage's NMI / ARI / ACC.
- ``.. cdrepro-what-ran::``: what the params file ran: the profile, the runs, the methods (each
  with its variants), the datasets, batch sizes and seeds.
- ``.. cdrepro-figure:: PATH``: docutils' ``figure``, the image inside the page as a data URI
  (the report is one self-contained file; Snakemake's own ``embeddedfigure`` links the file
  instead: its mixin's ``run`` comes after ``Figure.run`` in its bases).
- ``.. cdrepro-params-file::``: the params file every step reads (``$CDREPRO_PARAMS``, as the
  CLI finds it; else params.yaml), folded into one line: its name and a download link; its text
  one click away.
"""

from __future__ import annotations

import base64
import csv
import html
import mimetypes
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.parsers.rst.directives.images import Figure
from docutils.statemachine import StringList

from cdrepro.cli import PARAMS_ENV

METRICS = ("nmi", "ari", "acc")
ROLES = ("backbone", "final")
# The held-out columns after them, as methods.tex has them (cdrepro.comparison.table.HELD_OUT_COLUMNS).
HELD_OUT = (("backbone", "knn", "kNN h"), ("final", "knn", "kNN final"), ("backbone", "linear", "Linear h"))
OURS, NOTHING_PUBLISHED = "ours", "none"
NOTE_MARKS = ("†", "‡", "§", "¶", "‖")
UNCONFIRMED = "*"


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "nan", "NaN") else None


Key = tuple[str, ...]  # a row: dataset, method, variant, batch size, source, paper column (_rows)
Cell = tuple[float, str] | None  # value and its text; None where the row has no number


def _cell(rec: Mapping[str, str]) -> tuple[float, str]:
    """(mean, text): ours, mean ± the half-width of the 95 % interval over seeds (one seed: the
    plain mean); a published number, ± its std where the source gives one."""
    mean = float(rec["mean"])
    low, high, std = _number(rec["ci_low"]), _number(rec["ci_high"]), _number(rec["std"])
    interval = None if low is None or high is None else (high - low) / 2
    spread = interval if rec["source"] == OURS else std
    text = f"{mean:.3f}" if spread is None else f"{mean:.3f} ± {spread:.3f}"
    return mean, text + ("" if rec["confirmed"] != "False" else UNCONFIRMED)


def _rows(records: Sequence[Mapping[str, str]]) -> dict[Key, list[Mapping[str, str]]]:
    """The CSV's records grouped into the table's rows, in the CSV's (the table's) order."""
    rows: dict[Key, list[Mapping[str, str]]] = {}
    for rec in records:
        key = tuple(rec[c] for c in ("dataset", "method", "variant", "batch_size", "source", "paper_column"))
        rows.setdefault(key, []).append(rec)
    return rows


def methods_table_html(records: Sequence[Mapping[str, str]]) -> str:
    """The methods table as HTML, from ``methods.csv``'s records (every value a string, empty
    where the CSV has none). Bold: the best of our methods per column within a dataset (the
    raw-pixel K-means and the published rows are references, not ranked), as in methods.tex."""
    rows = _rows(records)
    marks = _note_marks(rows)
    columns = [(role, metric) for role in ROLES for metric in METRICS] + [(role, m) for role, m, _ in HELD_OUT]
    cells: dict[Key, list[Cell]] = {}
    for key, part in rows.items():
        found = {(rec["stage_role"], rec["metric"]): rec for rec in part}
        cells[key] = [_cell(found[c]) if c in found else None for c in columns]
    best = _best_of_ours(cells)
    out = ['<table class="cdrepro-methods">', *_header_html(), "<tbody>"]
    dataset = None
    for key, part in rows.items():
        if key[0] != dataset:
            dataset = key[0]
            out.append(
                f'<tr><th colspan="{5 + len(columns)}" class="cdrepro-dataset">'
                f"{html.escape(part[0]['dataset_title'] or dataset)}</th></tr>"
            )
        out.append(_row_html(key, part, cells[key], best, marks))
    out += ["</tbody>", "</table>"]
    footnotes = [f"{mark} {html.escape(note)}" for note, mark in marks.items()]
    if any(rec["confirmed"] == "False" for rec in records):
        footnotes.append(f"{UNCONFIRMED} a published number that no reachable source confirms")
    if footnotes:
        out.append('<p class="cdrepro-notes">' + "; ".join(footnotes) + ".</p>")
    return "\n".join(out)


def _note_marks(rows: Mapping[Key, Sequence[Mapping[str, str]]]) -> dict[str, str]:
    """A footnote mark for each distinct note of a published row (a row with nothing published
    shows its note in place of its numbers)."""
    notes = dict.fromkeys(
        rec["note"]
        for key, part in rows.items()
        if key[4] not in (OURS, NOTHING_PUBLISHED)
        for rec in part
        if rec["note"]
    )
    return {note: NOTE_MARKS[i % len(NOTE_MARKS)] * (1 + i // len(NOTE_MARKS)) for i, note in enumerate(notes)}


def _best_of_ours(cells: Mapping[Key, Sequence[Cell]]) -> dict[tuple[str, int], float]:
    """Per dataset and column, the best value of our methods' rows (not the pixel baseline's)."""
    best: dict[tuple[str, int], float] = {}
    for key, row in cells.items():
        if key[4] == OURS and key[1]:
            for j, cell in enumerate(row):
                if cell is not None:
                    best[(key[0], j)] = max(best.get((key[0], j), cell[0]), cell[0])
    return best


def _header_html() -> list[str]:
    return [
        "<thead>",
        '<tr><th rowspan="2">Method</th><th rowspan="2">Batch</th><th rowspan="2">Source</th>'
        '<th rowspan="2">Final stage</th><th rowspan="2">Seeds</th>'
        '<th colspan="3">Backbone</th><th colspan="3">Final stage</th>'
        f'<th colspan="{len(HELD_OUT)}">Held-out accuracy</th></tr>',
        "<tr>"
        + "".join(f"<th>{m.upper()}</th>" for _ in ROLES for m in METRICS)
        + "".join(f"<th>{header}</th>" for _, _, header in HELD_OUT)
        + "</tr>",
        "</thead>",
    ]


def _row_html(
    key: Key,
    part: Sequence[Mapping[str, str]],
    cells: Sequence[Cell],
    best: Mapping[tuple[str, int], float],
    marks: Mapping[str, str],
) -> str:
    first, ours = part[0], key[4] == OURS
    finals = [rec["stage"] for rec in part if rec["stage_role"] == ROLES[-1]]
    seeds = {rec["n_seeds"] for rec in part if rec["n_seeds"]}
    seeds_text = (
        ""
        if not ours or not key[1] or not seeds
        else ("one seed" if seeds == {"1"} else f"{'–'.join(sorted(seeds, key=int))} seeds")
    )
    row_notes = [marks[n] for n in dict.fromkeys(rec["note"] for rec in part) if n in marks]
    lead = [
        html.escape(first["method_label"]) if ours else "",
        html.escape(key[3]),
        html.escape(first["source_label"]) + (f"<sup>{','.join(row_notes)}</sup>" if row_notes else ""),
        html.escape(finals[0] if finals else ""),
        seeds_text,
    ]
    if key[4] == NOTHING_PUBLISHED:
        numbers = [f'<td colspan="{len(cells)}"><em>{html.escape(first["note"])}</em></td>']
    else:
        numbers = []
        for j, cell in enumerate(cells):
            text = "–" if cell is None else html.escape(cell[1])
            bold = ours and key[1] and cell is not None and cell[0] == best.get((key[0], j))
            numbers.append(f"<td><strong>{text}</strong></td>" if bold else f"<td>{text}</td>")
    row_class = "cdrepro-ours" if ours else "cdrepro-published"
    return f'<tr class="{row_class}">' + "".join(f"<td>{c}</td>" for c in lead) + "".join(numbers) + "</tr>"


def read_methods_csv(path: Path) -> list[dict[str, str]]:
    """``methods.csv``'s records, every value as the CSV has it (empty where it has none)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def params_file() -> Path:
    """The params file the workflow's steps read (``cdrepro.cli`` finds it the same way)."""
    return Path(os.environ.get(PARAMS_ENV, "params.yaml"))


def what_ran_rst(params: Mapping[str, Any]) -> str:
    """What a params file runs, as a reST list: its profile and runs, their methods (each with
    its variants where it has several), datasets, batch sizes and seeds."""
    from cdrepro.results import dataset_name, dataset_titles, variant_infos
    from cdrepro.run_settings import runs_of

    runs, infos = runs_of(dict(params)), variant_infos(dict(params))
    methods: dict[tuple[str, str], list[str]] = {}  # (method, label) -> its variants, in run order
    for run in runs:
        variants = methods.setdefault((infos[run.variant].method, infos[run.variant].label), [])
        variants += [] if run.variant in variants else [run.variant]
    named = [
        label if variants == [method] else f"{label} ({', '.join(f'``{v}``' for v in variants)})"
        for (method, label), variants in methods.items()
    ]
    titles = dataset_titles(dict(params))
    datasets = ", ".join(dataset_name(d, titles) for d in dict.fromkeys(run.dataset for run in runs))
    batches = ", ".join(str(b) for b in sorted({run.batch_size for run in runs}))
    seeds = ", ".join(str(s) for s in sorted({run.seed for run in runs}))
    return "\n".join(
        [
            f"- **Profile** ``{params['profile']}``: {len(runs)} run{'s' * (len(runs) != 1)} on {datasets}; "
            f"batch size{'s' * (',' in batches)} {batches}; seed{'s' * (',' in seeds)} {seeds}.",
            f"- **Methods** ({len(methods)}): {', '.join(named)}.",
        ]
    )


def params_file_html(path: Path) -> str:
    """The params file, folded: its name and a download link; its text one click away."""
    text = path.read_text(encoding="utf-8")
    uri = "data:text/yaml;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()
    name = html.escape(path.name)
    return (
        f'<details class="cdrepro-params"><summary><strong>Params file</strong> '
        f'<tt class="docutils literal">{html.escape(str(path))}</tt>, the only settings every step reads '
        f'(<a href="{uri}" download="{name}">download it</a>; click here to show it)</summary>\n'
        f"<pre>{html.escape(text)}</pre></details>"
    )


class MethodsTable(Directive):
    """``.. cdrepro-methods-table:: PATH`` (methods.csv): the table, or a line saying it is missing."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = Path(self.arguments[0])
        if not path.is_file():
            return [
                nodes.paragraph(
                    text=f"No methods table yet ({path} is missing): run the workflow "
                    "(make run, or snakemake) and make the report again."
                )
            ]
        return [nodes.raw("", methods_table_html(read_methods_csv(path)), format="html")]


class WhatRan(Directive):
    """``.. cdrepro-what-ran::``: ``what_ran_rst`` of the params file (``params_file``)."""

    def run(self) -> list[nodes.Node]:
        from cdrepro.config import load_params

        node = nodes.container(classes=["cdrepro-what-ran"])
        self.state.nested_parse(
            StringList(what_ran_rst(load_params(params_file())).splitlines()), self.content_offset, node
        )
        return [node]


class EmbeddedFigure(Figure):
    """``.. cdrepro-figure:: PATH``: a figure whose image is inside the page (a data URI)."""

    def run(self) -> list[nodes.Node]:
        path = Path(self.arguments[0])
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.options.setdefault("alt", path.name)
        self.arguments[0] = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
        return super().run()


class ParamsFile(Directive):
    """``.. cdrepro-params-file::``: the params file, folded (``params_file_html``)."""

    def run(self) -> list[nodes.Node]:
        path = params_file()
        if not path.is_file():
            return [nodes.paragraph(text=f"The params file {path} is missing.")]
        return [nodes.raw("", params_file_html(path), format="html")]


directives.register_directive("cdrepro-methods-table", MethodsTable)
directives.register_directive("cdrepro-what-ran", WhatRan)
directives.register_directive("cdrepro-figure", EmbeddedFigure)
directives.register_directive("cdrepro-params-file", ParamsFile)

__all__ = ["methods_table_html", "params_file", "params_file_html", "read_methods_csv", "what_ran_rst"]
