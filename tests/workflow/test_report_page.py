"""The Snakemake report's first screen: workflow/report/workflow.rst with cdrepro.report_page's
directives, rendered as Snakemake 9 renders a workflow description (Jinja, then docutils). The
whole report of a real run, in headless Chromium: tests/test_figures.py::
test_workflow_figures_and_html_report."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from cdrepro import report_page
from cdrepro.comparison.frame import CSV_COLUMNS
from cdrepro.config import load_params

REPO = Path(__file__).resolve().parents[2]
# Snakemake's own call, as it is (docutils 0.22 says the keyword will go in 2.0).
pytestmark = pytest.mark.filterwarnings('ignore:Argument "writer_name":PendingDeprecationWarning')


def render_description(config: dict, files: list, categories: dict) -> str:
    """What ``snakemake.report.auto_report`` makes of the workflow description: its Jinja
    options and context, the link targets it appends (a category, a file's item) and docutils'
    ``html_body``. ``import cdrepro.report_page`` in the Snakefile registers the directives."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    links = "\n\n" + "\n".join(
        [f".. _{cat.name}: javascript:app.showCategory('{cat.name}')" for cat in categories]
        + [f".. _{res.target}: javascript:app.showResultInfo('{res.path}')" for res in files]
    )
    text = (REPO / "workflow" / "report" / "workflow.rst").read_text() + links
    page = (
        Environment(trim_blocks=True, lstrip_blocks=True)
        .from_string(text)
        .render(snakemake=SimpleNamespace(config=config), categories=categories, files=files)
    )
    return publish_parts(page, writer_name="html")["html_body"]


def number(dataset, method, label, variant, batch, source, source_label, stage, role, metric, mean, **more):
    return {
        **dict.fromkeys(CSV_COLUMNS, ""),
        "dataset": dataset,
        "dataset_title": dataset.title(),
        "method": method,
        "method_label": label,
        "variant": variant,
        "batch_size": batch,
        "source": source,
        "source_label": source_label,
        "stage": stage,
        "stage_role": role,
        "metric": metric,
        "mean": mean,
        "confirmed": "True",
        **more,
    }


def methods_csv(path: Path) -> Path:
    """A methods.csv in the methods table's long format: the pixel baseline, CD over three
    seeds, CC over one, CC's paper (one number unconfirmed, one note) and CLD's "nothing
    published" row."""
    rows = []
    for m, metric in enumerate(("nmi", "ari", "acc")):
        rows.append(
            number(
                "digits",
                "",
                "K-means (raw pixels)",
                "kmeans_pixels",
                "",
                "ours",
                "Ours",
                "pixels",
                "backbone",
                metric,
                0.5 + m / 100,
                n_seeds=1,
                note="one seed",
            )
        )
        for role, stage in (("backbone", "backbone"), ("final", "feature")):
            rows.append(
                number(
                    "digits",
                    "cd",
                    "CD",
                    "cd",
                    128,
                    "ours",
                    "Ours",
                    stage,
                    role,
                    metric,
                    0.6 + m / 100,
                    n_seeds=3,
                    ci_low=0.55 + m / 100,
                    ci_high=0.65 + m / 100,
                    std=0.02,
                )
            )
        for role, stage in (("backbone", "backbone"), ("final", "cluster")):
            rows.append(
                number(
                    "digits",
                    "cc",
                    "CC",
                    "cc",
                    128,
                    "ours",
                    "Ours",
                    stage,
                    role,
                    metric,
                    0.7 + m / 100,
                    n_seeds=1,
                    note="one seed",
                )
            )
        rows.append(
            number(
                "digits",
                "cc",
                "CC",
                "",
                256,
                "cc_paper",
                "CC's paper",
                "cluster",
                "final",
                metric,
                0.8 + m / 100,
                confirmed=str(metric != "ari"),
                note="STL-10 with its unlabeled images",
            )
        )
    rows.append(
        number(
            "digits",
            "cld",
            "CLD",
            "",
            "",
            "none",
            "published",
            "",
            "",
            "",
            "",
            note="no published NMI/ARI/ACC (CLD's paper gives only kNN and linear-probe accuracies)",
        )
    )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def description(tmp_path, monkeypatch, embedded_params):
    """The first screen of a report of a profile of CD, CC and CLD runs on digits, with its
    methods table and one figure per key category."""
    from snakemake.report import Category

    embedded_params["profile"] = "first"
    embedded_params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": v, "seed": s}
        for v in ("cd", "cc", "cld")
        for s in ((42, 43, 44) if v == "cd" else (42,))
    ]
    params_file = tmp_path / "first.yaml"
    params_file.write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    monkeypatch.setenv("CDREPRO_PARAMS", str(params_file))  # as common.smk sets it
    tables = tmp_path / "results" / "first" / "tables"
    tables.mkdir(parents=True)
    files = [
        SimpleNamespace(target=name, path=path, mime=mime)
        for name, path, mime in [
            ("methods.csv", methods_csv(tables / "methods.csv"), "text/csv"),
            ("methods.tex", tables / "methods.tex", "text/plain"),
        ]
    ]
    categories = {}
    for category, stem in (("Methods", "methods_digits"), ("Training curves", "curves_digits"), ("t-SNE", "tsne")):
        png = tmp_path / f"{stem}.png"
        Image.new("RGB", (4, 2), (200, 30, 30)).save(png)
        record = SimpleNamespace(target=png.name, path=png, mime="image/png")
        files.append(record)
        categories[Category(category)] = {Category("digits"): [record]}
    return render_description(load_params(params_file), files, categories)


def test_the_first_screen_is_what_ran_then_the_methods_table_not_a_params_dump(description):
    assert "System Message" not in description, description  # every directive and link resolved
    # What ran, from the params file: the profile, the runs, the methods.
    assert '<strong>Profile</strong> <tt class="docutils literal">first</tt>: 5 runs on Digits' in description
    assert "<strong>Methods</strong> (3): CD, CC, CLD." in description
    # The methods table, as methods.tex lays it out: a row per method and source.
    assert '<table class="cdrepro-methods">' in description
    assert '<th colspan="3">Backbone</th><th colspan="3">Final stage</th>' in description
    assert "<td>CD</td><td>128</td><td>Ours</td><td>feature</td><td>3 seeds</td>" in description
    assert "<td><strong>0.600 ± 0.050</strong></td>" not in description  # CC's 0.70 is the best
    assert "<td><strong>0.700</strong></td>" in description and "<td>0.600 ± 0.050</td>" in description
    assert "<td>CC&#x27;s paper<sup>†</sup></td>" in description and "<td>0.810*</td>" in description
    assert "† STL-10 with its unlabeled images; * a published number that no reachable source confirms" in description
    assert "<em>no published NMI/ARI/ACC (CLD&#x27;s paper gives only kNN" in description
    # No params dump: the params file is folded into one line under what ran, with a download link.
    assert "&quot;profile&quot;" not in description and '"profile":' not in description
    assert '<details class="cdrepro-params">' in description and 'download="first.yaml"' in description
    assert "profile: first" in description.split('<details class="cdrepro-params">', 1)[1]
    # In order: what ran, the params file, the table, the key figures (inside the page), the menu.
    at = [
        description.index(mark)
        for mark in (
            '<div class="cdrepro-what-ran',
            '<details class="cdrepro-params">',
            '<table class="cdrepro-methods">',
            "Key figures",
            'alt="methods_digits.png" src="data:image/png;base64,',
            'alt="curves_digits.png" src="data:image/png;base64,',
            "More in the menu",
        )
    ]
    assert at == sorted(at), at
    assert 'alt="tsne.png"' not in description  # only the key figures; the rest is in the menu


def test_without_a_methods_table_the_first_screen_says_so(tmp_path, monkeypatch, embedded_params):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    monkeypatch.setenv("CDREPRO_PARAMS", str(params_file))
    description = render_description(load_params(params_file), [], {})
    assert "No methods table in this report" in description and "<table" not in description
    assert "System Message" not in description, description


def test_the_methods_table_of_an_empty_csv_is_its_header_only(tmp_path):
    path = tmp_path / "methods.csv"
    path.write_text(",".join(CSV_COLUMNS) + "\n")
    page = report_page.methods_table_html(report_page.read_methods_csv(path))
    assert page.count("<tr") == 2 and "cdrepro-notes" not in page
