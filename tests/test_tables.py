"""Tests of cdrepro.tables: numbers land in the right cells, bold is the true best, nothing is lost."""

from __future__ import annotations

import logging
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from system_packages import skip_unless_installed

from cdrepro import atomic, tables

REPO = Path(__file__).resolve().parents[1]
TITLES = {"digits": "Digits", "my_photos": "R&D_photos #1"}
METRICS = ("nmi", "ari", "acc")

# (dataset, batch size, variant, seeds). stl10 lacks no_bn on purpose (a missing Table 4 row);
# nobody runs single_view (Tables 7 and 10 have no data); wide_head and cd at 64 fit no table.
RUNS = [
    ("cifar10", 128, "cd", (42,)),
    ("stl10", 128, "cd", (42, 43, 44)),
    ("stl10", 256, "cd", (42,)),
    ("stl10", 128, "no_ne", (42,)),
    ("stl10", 128, "no_ne_no_bn", (42,)),
    ("stl10", 128, "no_head", (42, 43)),
    ("stl10", 128, "no_sched", (42,)),
    ("digits", 128, "cd", (42, 43)),
    ("digits", 256, "cd", (42,)),
    ("digits", 128, "no_ne", (42,)),
    ("digits", 128, "no_bn", (42,)),
    ("digits", 128, "no_ne_no_bn", (42,)),
    ("digits", 128, "no_head", (42,)),
    ("digits", 128, "wide_head", (42,)),
    ("digits", 64, "cd", (42,)),
    ("my_photos", 128, "cd", (7,)),
]


def value(dataset: str, batch_size: int, variant: str, seed: int, stage: str, metric: str) -> float:
    """A distinct, reproducible number in (0, 1) for every input cell."""
    key = f"{dataset}|{batch_size}|{variant}|{seed}|{stage}|{metric}"
    return round(0.05 + (sum(ord(c) * (i + 1) for i, c in enumerate(key)) % 9001) / 10000, 6)


def make_metrics(runs=RUNS) -> list[dict]:
    out = []
    for dataset, batch_size, variant, seeds in runs:
        for seed in seeds:
            out.append({
                "run_id": f"{dataset}-bs{batch_size}-{variant}-s{seed}", "dataset": dataset,
                "batch_size": batch_size, "variant": variant, "seed": seed, "n_images": 100, "num_classes": 10,
                **{stage: {m: value(dataset, batch_size, variant, seed, stage, m) for m in METRICS}
                   for stage in ("backbone", "feature")},
                "feature_stage": "projector" if variant == "no_head" else "feature",
            })
    return out


BASELINES = [
    {"dataset": d, "n_images": 100, "num_classes": 10, "pixels": {m: value(d, 0, "pix", 0, "px", m) for m in METRICS}}
    for d in ("stl10", "digits")
]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("r") / "results" / "embedded" / "tables"
    paths = tables.write_tables(make_metrics(), BASELINES, TITLES, out)
    return {p.name: p for p in paths}


def rows_of(tex: str) -> list[list[str]]:
    """The cells of every row of the tabular (header rows included)."""
    body = tex.split(r"\begin{tabular}", 1)[1].split(r"\end{tabular}", 1)[0]
    return [[c.strip() for c in line[: -len(r"\\")].split(" & ")]
            for line in body.splitlines() if line.rstrip().endswith(r"\\")]


def number(cell: str) -> float | None:
    match = re.match(r"^(?:\\textbf\{)?([0-9]+\.[0-9]+)", cell)
    return float(match[1]) if match else None


def is_bold(cell: str) -> bool:
    return cell.startswith(r"\textbf{")


def comparison_cell(tex: str, dataset_title: str, metric: str, column: str) -> str:
    """The cell of Table 2/3 at (dataset, metric) under a column header."""
    rows = rows_of(tex)
    col = rows[0].index(column)
    current = None
    for row in rows[1:]:
        current = row[0] or current
        if current == dataset_title and row[1] == metric.upper():
            return row[col]
    raise AssertionError(f"no row {dataset_title}/{metric}")


def data_rows_by_dataset(tex: str, header_rows: int) -> dict[str, list[list[str]]]:
    blocks: dict[str, list[list[str]]] = {}
    current = None
    for row in rows_of(tex)[header_rows:]:
        current = row[0] or current
        blocks.setdefault(current, []).append(row)
    return blocks


def expected(dataset, batch_size, variant, stage, metric, seeds) -> list[float]:
    return [value(dataset, batch_size, variant, s, stage, metric) for s in seeds]


# ---------------------------------------------------------------------------------- collect


def test_collect_aggregates_mean_and_sample_std_over_seeds():
    frame = tables.collect(make_metrics(), BASELINES)
    row = frame[(frame.dataset == "stl10") & (frame.batch_size == 128) & (frame.variant == "cd")
                & (frame.stage == "feature") & (frame.metric == "ari")].iloc[0]
    values = expected("stl10", 128, "cd", "feature", "ari", (42, 43, 44))
    assert row["mean"] == pytest.approx(statistics.fmean(values))
    assert row["std"] == pytest.approx(statistics.stdev(values))  # ddof=1
    assert row["n_seeds"] == 3 and row["seeds"] == "42;43;44"
    assert [float(v) for v in row["values"].split(";")] == values


def test_collect_single_seed_has_nan_std_and_baseline_rows():
    frame = tables.collect(make_metrics(), BASELINES)
    single = frame[(frame.dataset == "cifar10") & (frame.variant == "cd")]
    assert len(single) == 6 and single["std"].isna().all() and (single["n_seeds"] == 1).all()
    base = frame[frame.variant == tables.BASELINE_VARIANT]
    assert set(base.dataset) == {"stl10", "digits"} and set(base.stage) == {"backbone"}
    assert base["batch_size"].isna().all()
    no_head = frame[(frame.variant == "no_head") & (frame.stage == "feature")]
    assert set(no_head.feature_stage) == {"projector"}
    assert set(frame.source) == {"ours"}


def test_collect_refuses_duplicate_seed_and_reserved_name():
    twice = make_metrics([("stl10", 128, "cd", (42,))]) * 2
    with pytest.raises(ValueError, match="same seed"):
        tables.collect(twice, [])
    reserved = make_metrics([("stl10", 128, tables.BASELINE_VARIANT, (42,))])
    with pytest.raises(ValueError, match="reserved"):
        tables.collect(reserved, [])


def test_paper_tables_mapping():
    assert tables.paper_tables(128, "cd", "backbone") == ("2", "4", "8", "9", "10")
    assert tables.paper_tables(256, "cd", "feature") == ("3",)
    assert tables.paper_tables(128, "no_head", "feature") == ("6",)
    assert tables.paper_tables(256, "no_ne", "feature") == ("other",)
    assert tables.paper_tables(128, "wide_head", "backbone") == ("other",)


# ---------------------------------------------------------------------------- Tables 2 and 3


def test_table2_has_the_papers_cd128_for_cifar10(written):
    tex = written["table2.tex"].read_text()
    got = [number(comparison_cell(tex, "CIFAR-10", m, "CD-128")) for m in METRICS]
    assert got == [0.725, 0.620, 0.800]


def test_our_numbers_land_in_their_cells(written):
    t2, t3 = written["table2.tex"].read_text(), written["table3.tex"].read_text()
    # several seeds: mean +- sample std
    vals = expected("stl10", 128, "cd", "backbone", "nmi", (42, 43, 44))
    cell = comparison_cell(t2, "STL-10", "nmi", "Ours CD-128")
    assert re.sub(r"\\textbf\{([^}]*)\}", r"\1", cell) == (
        f"{statistics.fmean(vals):.3f} $\\pm$ {statistics.stdev(vals):.3f}")
    # one seed: the plain value
    cell = comparison_cell(t3, "STL-10", "acc", "Ours CD-256")
    assert number(cell) == round(value("stl10", 256, "cd", 42, "feature", "acc"), 3)
    assert r"\pm" not in cell
    # pixel K-means next to the paper's K-means
    header = rows_of(t2)[0]
    assert header.index("Ours K-means") == header.index("K-means") + 1
    assert number(comparison_cell(t2, "Digits", "ari", "Ours K-means")) == round(
        value("digits", 0, "pix", 0, "px", "ari"), 3)
    # a dataset the paper did not use: its own rows, the paper's columns "--"
    assert comparison_cell(t2, "Digits", "nmi", "CD-128") == "--"
    assert comparison_cell(t2, "Digits", "nmi", "CC") == "--"
    assert number(comparison_cell(t3, "Digits", "nmi", "Ours CD-256")) == round(
        value("digits", 256, "cd", 42, "feature", "nmi"), 3)
    # a paper dataset we did not run
    assert comparison_cell(t2, "ImageNet-10", "acc", "Ours CD-128") == "--"
    assert "Ours K-means" not in rows_of(t3)[0]


def test_bold_marks_the_row_maximum_in_tables_2_and_3(written):
    for name in ("table2.tex", "table3.tex"):
        for row in rows_of(written[name].read_text())[1:]:
            numbers = {i: number(c) for i, c in enumerate(row[2:]) if number(c) is not None}
            bold = {i for i, c in enumerate(row[2:]) if is_bold(c)}
            if len(numbers) < 2:
                assert not bold
            else:
                top = max(numbers.values())
                assert bold == {i for i, v in numbers.items() if v == top}, (name, row)


def test_bold_can_go_to_our_column(tmp_path):
    metrics = make_metrics([("cifar10", 128, "cd", (42,))])
    metrics[0]["backbone"]["nmi"] = 0.99
    paths = {p.name: p for p in tables.write_tables(metrics, [], {}, tmp_path / "t")}
    tex = paths["table2.tex"].read_text()
    assert comparison_cell(tex, "CIFAR-10", "nmi", "Ours CD-128") == r"\textbf{0.990}"
    assert comparison_cell(tex, "CIFAR-10", "nmi", "CD-256") == "0.734"


# ---------------------------------------------------------------------------- Tables 4-10


def test_table4_rows_follow_the_ne_bn_layout(written):
    blocks = data_rows_by_dataset(written["table4.tex"].read_text(), header_rows=2)
    assert list(blocks) == ["STL-10", "Digits"]
    digits = blocks["Digits"]
    marks = [(row[1], row[2]) for row in digits]
    check = r"$\checkmark$"
    assert marks == [("--", "--"), (check, "--"), ("--", check), (check, check)]
    variants = ["no_ne_no_bn", "no_bn", "no_ne", "cd"]
    for row, variant in zip(digits, variants):
        seeds = (42, 43) if variant == "cd" else (42,)
        for j, (stage, metric) in enumerate((s, m) for s in ("backbone", "feature") for m in METRICS):
            want = statistics.fmean(expected("digits", 128, variant, stage, metric, seeds))
            assert number(row[3 + j]) == round(want, 3), (variant, stage, metric)


def test_ablation_bold_is_the_best_of_each_column_within_a_dataset(written):
    for name in ("table4.tex", "table5.tex", "table6.tex", "table9.tex"):
        tex = written[name].read_text()
        first = 4 if "Source" in rows_of(tex)[0] else (3 if name == "table4.tex" else 2)
        for block in data_rows_by_dataset(tex, header_rows=2).values():
            ours = [row for row in block if "Authors' repo" not in row]
            for col in range(first, len(block[0])):
                numbers = {i: number(row[col]) for i, row in enumerate(ours) if number(row[col]) is not None}
                bold = {i for i, row in enumerate(ours) if is_bold(row[col])}
                top = max(numbers.values()) if len(numbers) > 1 else None
                assert bold == {i for i, v in numbers.items() if v == top}, (name, col, block)
            assert not any(is_bold(c) for row in block if "Authors' repo" in row for c in row)


def test_tables_6_and_9_carry_the_authors_reference_rows(written):
    t6 = data_rows_by_dataset(written["table6.tex"].read_text(), header_rows=2)
    stl = [row for row in t6["STL-10"] if row[1] == "Authors' repo"]
    assert [row[3:] for row in stl] == [
        ["0.599 $\\pm$ 0.029", "0.458 $\\pm$ 0.043", "0.649 $\\pm$ 0.053"],
        ["0.679 $\\pm$ 0.007", "0.564 $\\pm$ 0.023", "0.720 $\\pm$ 0.026"],
    ]
    assert not any(row[1] == "Authors' repo" for row in t6["Digits"])
    t9 = data_rows_by_dataset(written["table9.tex"].read_text(), header_rows=2)
    assert [row[3] for row in t9["STL-10"] if row[1] == "Authors' repo"] == ["0.659 $\\pm$ 0.016", "0.674 $\\pm$ 0.015"]
    assert "projector" in written["table6.tex"].read_text()


def test_table5_and_8_use_the_feature_and_backbone_stage(written):
    t5 = data_rows_by_dataset(written["table5.tex"].read_text(), header_rows=2)["STL-10"]
    t8 = data_rows_by_dataset(written["table8.tex"].read_text(), header_rows=2)["STL-10"]
    assert number(t5[0][2]) == round(value("stl10", 128, "no_sched", 42, "feature", "nmi"), 3)
    assert number(t8[0][2]) == round(value("stl10", 128, "no_sched", 42, "backbone", "nmi"), 3)
    assert "Digits" not in data_rows_by_dataset(written["table5.tex"].read_text(), header_rows=2)


# --------------------------------------------------------------------------- missing data


def test_missing_runs_show_as_dashes_and_are_reported(written, tmp_path, caplog):
    t4 = written["table4.tex"].read_text()
    no_bn_row = data_rows_by_dataset(t4, header_rows=2)["STL-10"][1]
    assert no_bn_row[3:] == ["--"] * 6
    assert r"Not run: no\_bn on STL-10." in t4
    t7 = written["table7.tex"].read_text()
    assert r"\begin{tabular}" not in t7 and "not reproduced" in t7 and r"single\_view" in t7
    not_run = written["table2.tex"].read_text().split("Not run: ", 1)[1].split("}", 1)[0]
    assert "CD-256 on R\\&D\\_photos \\#1" in not_run and "pixel K-means on CIFAR-10" in not_run
    assert "STL-10" not in not_run  # stl10 has its pixel K-means, CD-128 and CD-256
    with caplog.at_level(logging.WARNING, logger="cdrepro.tables"):
        paths = tables.write_tables([], [], {}, tmp_path / "empty")
    assert sorted(p.name for p in paths) == sorted([f"table{n}.tex" for n in range(2, 11)] + ["all.csv", "table_other.tex"])
    assert any("table 4" in r.getMessage() for r in caplog.records)


def test_unknown_variants_and_batch_sizes_go_to_table_other(written, tmp_path):
    rows = rows_of(written["table_other.tex"].read_text())[2:]
    assert [(r[0], r[1], r[2]) for r in rows] == [("Digits", "64", "cd"), ("Digits", "128", r"wide\_head")]
    assert number(rows[1][4]) == round(value("digits", 128, "wide_head", 42, "backbone", "nmi"), 3)
    for n in range(2, 11):
        assert "wide" not in written[f"table{n}.tex"].read_text()
    paths = tables.write_tables(make_metrics([("stl10", 128, "cd", (1,))]), [], {}, tmp_path / "t")
    # Written even when empty, so the workflow's outputs are a fixed set; but holds no table.
    other = tmp_path / "t" / "table_other.tex"
    assert other in paths and "tabular" not in other.read_text()


def test_latex_specials_are_escaped(written):
    t2 = written["table2.tex"].read_text()
    assert r"R\&D\_photos \#1" in t2 and "R&D" not in t2
    for name, path in written.items():
        if not name.endswith(".tex"):
            continue
        text = path.read_text()
        assert "no_ne" not in text and "wide_head" not in text and "my_photos" not in text, name
        if r"\begin{tabular}" in text:
            widths = {sum(int(m[1]) if (m := re.match(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in row)
                      for row in rows_of(text)}
            assert len(widths) == 1, (name, widths)  # an unescaped & would add a cell
    assert tables.latex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")


# -------------------------------------------------------------------------------- all.csv


def test_all_csv_holds_every_input_number(written):
    frame = pd.read_csv(written["all.csv"], keep_default_na=False, na_values=[""])
    ours = frame[frame.source == "ours"]
    for run in make_metrics():
        for stage in ("backbone", "feature"):
            for metric in METRICS:
                hit = ours[(ours.dataset == run["dataset"]) & (ours.batch_size == run["batch_size"])
                           & (ours.variant == run["variant"]) & (ours.stage == stage) & (ours.metric == metric)]
                assert len(hit) == 1
                seeds = [int(s) for s in str(hit.iloc[0]["seeds"]).split(";")]
                values = [float(v) for v in str(hit.iloc[0]["values"]).split(";")]
                assert values[seeds.index(run["seed"])] == run[stage][metric]
                assert hit.iloc[0]["mean"] == pytest.approx(statistics.fmean(values))
    for base in BASELINES:
        hit = ours[(ours.dataset == base["dataset"]) & (ours.variant == tables.BASELINE_VARIANT)]
        assert {r.metric: r.mean for r in hit.itertuples()} == base["pixels"]
    assert ours[ours.variant == "wide_head"]["table"].eq("other").all()


def test_all_csv_holds_the_papers_and_the_authors_numbers(written):
    frame = pd.read_csv(written["all.csv"], keep_default_na=False, na_values=[""])
    paper = tables.load_paper_results()
    assert len(paper) == 4 * 9 + 4 * 8
    got = frame[frame.source == "paper"]
    for rec in paper.itertuples():
        for metric in METRICS:
            hit = got[(got.table.astype(str) == rec.table) & (got.dataset == rec.dataset)
                      & (got.method == rec.method) & (got.metric == metric)]
            assert hit["mean"].tolist() == [getattr(rec, metric)]
    cd128 = got[(got.dataset == "cifar10") & (got.variant == "cd") & (got.batch_size == 128) & (got.stage == "backbone")]
    assert sorted(cd128["mean"]) == [0.620, 0.725, 0.800]
    repo = frame[frame.source == "authors_repo"]
    assert len(repo) == 8 * 3
    hit = repo[(repo.dataset == "imagenet10") & (repo.variant == "no_head") & (repo.stage == "feature")
               & (repo.metric == "ari")].iloc[0]
    assert (hit["mean"], hit["std"], hit["feature_stage"]) == (0.413, 0.060, "projector")


# -------------------------------------------------------------------------------- writing


def test_every_file_is_written_atomically_and_returned(tmp_path, monkeypatch):
    seen: list[Path] = []
    real = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", lambda path, text: (seen.append(Path(path)), real(path, text)))
    out = tmp_path / "results" / "p" / "tables"
    paths = tables.write_tables(make_metrics(), BASELINES, TITLES, out)
    assert paths == seen
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert r"\texttt{results/p}" in (out / "table2.tex").read_text()
    assert "tab:cdrepro-other" in (out / "table_other.tex").read_text()


def test_all_tables_compile_with_pdflatex(written, tmp_path):
    """docs/img/tables.tex (the document `make tables-pdf` compiles) \\inputs every table the
    code writes, and compiles with them without errors, undefined commands or overfull lines."""
    skip_unless_installed(None if shutil.which("pdflatex") else "pdflatex is not installed (Debian: "
                          "texlive-latex-base, texlive-latex-recommended; .ci/apt-packages.txt)")
    document = (REPO / "docs" / "img" / "tables.tex").read_text()
    inputs = re.findall(r"\\input\{results/embedded/tables/([^}]+)\}", document)
    assert sorted(inputs) == sorted(Path(name).stem for name in written if name.endswith(".tex"))
    tables_dir = written["table2.tex"].parent
    doc = tmp_path / "tables.tex"
    doc.write_text(document.replace("results/embedded/tables/", f"{tables_dir.as_posix()}/"))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Overfull \\hbox" not in log, log[-3000:]
    pages = re.search(r"Output written on tables\.pdf \((\d+) pages?", log)
    assert pages and int(pages[1]) > 1 and (tmp_path / "tables.pdf").read_bytes().startswith(b"%PDF")
