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
import yaml
from scipy import stats
from system_packages import skip_unless_installed

from cdrepro import atomic, latex, tables
from cdrepro.comparison import table as comparison_table
from cdrepro.published import load_paper_results
from cdrepro.results import BASELINE_VARIANT, ProfileResults, variant_infos

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


def make_metrics(runs=RUNS, method: str = "cd") -> list[dict]:
    """metrics.json records; a no-head run's final stage is its projector, as evaluation names it.
    ``value`` is keyed by the stage's role (backbone, feature), whatever the stage's name."""
    out = []
    for dataset, batch_size, variant, seeds in runs:
        final = "projector" if variant == "no_head" or method != "cd" else "feature"
        for seed in seeds:
            out.append(
                {
                    "run_id": f"{dataset}-bs{batch_size}-{variant}-s{seed}",
                    "dataset": dataset,
                    "batch_size": batch_size,
                    "method": method,
                    "variant": variant,
                    "seed": seed,
                    "n_images": 100,
                    "num_classes": 10,
                    "stages": {
                        name: {m: value(dataset, batch_size, variant, seed, role, m) for m in METRICS}
                        for name, role in (("backbone", "backbone"), (final, "feature"))
                    },
                    "final_stage": final,
                }
            )
    return out


def params_variants(**extra: dict) -> dict:
    """The variants of the repository's params.yaml (their switches), plus ``extra``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["variants"].update(extra)
    return variant_infos(params)


VARIANTS = params_variants(wide_head={"feature_num": 512})


def results(metrics, baselines=(), titles=None, variants=VARIANTS) -> ProfileResults:
    return ProfileResults(list(metrics), list(baselines), dict(titles or {}), variants)


BASELINES = [
    {"dataset": d, "n_images": 100, "num_classes": 10, "pixels": {m: value(d, 0, "pix", 0, "px", m) for m in METRICS}}
    for d in ("stl10", "digits")
]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("r") / "results" / "embedded" / "tables"
    paths = tables.write_tables(results(make_metrics(), BASELINES, TITLES), out)
    return {p.name: p for p in paths}


def rows_of(tex: str) -> list[list[str]]:
    """The cells of every row of the tabular (header rows included)."""
    body = tex.split(r"\begin{tabular}", 1)[1].split(r"\end{tabular}", 1)[0]
    return [
        [c.strip() for c in line[: -len(r"\\")].split(" & ")]
        for line in body.splitlines()
        if line.rstrip().endswith(r"\\")
    ]


def number(cell: str) -> float | None:
    match = re.match(r"^(?:\\textbf\{)?([0-9]+\.[0-9]+)", cell)
    return float(match[1]) if match else None


def is_bold(cell: str) -> bool:
    return cell.startswith(r"\textbf{")


def stage_table_cell(tex: str, dataset_title: str, metric: str, column: str) -> str:
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


def interval_cell(values: list[float]) -> str:
    """A cell of several seeds as the tables print it: mean $\\pm$ the half-width of scipy's
    95 % Student t interval of the mean."""
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=stats.sem(values))
    return f"{statistics.fmean(values):.3f} $\\pm$ {(high - low) / 2:.3f}"


def unbold(cell: str) -> str:
    return re.sub(r"\\textbf\{([^}]*)\}", r"\1", cell)


def is_difference(row: list[str]) -> bool:
    """A "Delta from all on" row of an ablation table (its label spans the switch columns)."""
    return any("from all on" in cell for cell in row)


def run_rows(block: list[list[str]]) -> list[list[str]]:
    """An ablation block's rows of runs (ours and the authors'), without the difference rows."""
    return [row for row in block if not is_difference(row)]


# ---------------------------------------------------------------------------------- mapping


def test_paper_tables_mapping():
    assert tables.paper_tables(128, "cd", "cd", "backbone") == ("2", "4", "8", "9", "10")
    assert tables.paper_tables(256, "cd", "cd", "final") == ("3",)
    assert tables.paper_tables(128, "cd", "no_head", "final") == ("6",)
    assert tables.paper_tables(256, "cd", "no_ne", "final") == ("other",)
    assert tables.paper_tables(128, "cd", "wide_head", "backbone") == ("other",)
    # The paper's tables are CD's: another method, or a stage between, is "other".
    assert tables.paper_tables(128, "simclr", "cd", "backbone") == ("other",)
    assert tables.paper_tables(128, "cd", "cd", "intermediate") == ("other",)
    assert tables.paper_tables(None, "", BASELINE_VARIANT, "backbone") == ("2",)


# ---------------------------------------------------------------------------- Tables 2 and 3


def test_table2_has_the_papers_cd128_for_cifar10(written):
    tex = written["table2.tex"].read_text()
    got = [number(stage_table_cell(tex, "CIFAR-10", m, "CD-128")) for m in METRICS]
    assert got == [0.725, 0.620, 0.800]


def test_our_numbers_land_in_their_cells(written):
    t2, t3 = written["table2.tex"].read_text(), written["table3.tex"].read_text()
    # several seeds: mean +- the half-width of the 95 % interval
    vals = expected("stl10", 128, "cd", "backbone", "nmi", (42, 43, 44))
    cell = stage_table_cell(t2, "STL-10", "nmi", "Ours CD-128")
    assert unbold(cell) == interval_cell(vals)
    # one seed: the plain value
    cell = stage_table_cell(t3, "STL-10", "acc", "Ours CD-256")
    assert number(cell) == round(value("stl10", 256, "cd", 42, "feature", "acc"), 3)
    assert r"\pm" not in cell
    # pixel K-means next to the paper's K-means
    header = rows_of(t2)[0]
    assert header.index("Ours K-means") == header.index("K-means") + 1
    assert number(stage_table_cell(t2, "Digits", "ari", "Ours K-means")) == round(
        value("digits", 0, "pix", 0, "px", "ari"), 3
    )
    # a dataset the paper did not use: its own rows, the paper's columns "--"
    assert stage_table_cell(t2, "Digits", "nmi", "CD-128") == "--"
    assert stage_table_cell(t2, "Digits", "nmi", "CC") == "--"
    assert number(stage_table_cell(t3, "Digits", "nmi", "Ours CD-256")) == round(
        value("digits", 256, "cd", 42, "feature", "nmi"), 3
    )
    # a paper dataset we did not run
    assert stage_table_cell(t2, "ImageNet-10", "acc", "Ours CD-128") == "--"
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
    metrics[0]["stages"]["backbone"]["nmi"] = 0.99
    paths = {p.name: p for p in tables.write_tables(results(metrics), tmp_path / "t")}
    tex = paths["table2.tex"].read_text()
    assert stage_table_cell(tex, "CIFAR-10", "nmi", "Ours CD-128") == r"\textbf{0.990}"
    assert stage_table_cell(tex, "CIFAR-10", "nmi", "CD-256") == "0.734"


# ---------------------------------------------------------------------------- Tables 4-10


def test_table4_rows_follow_the_ne_bn_layout(written):
    blocks = data_rows_by_dataset(written["table4.tex"].read_text(), header_rows=2)
    assert list(blocks) == ["STL-10", "Digits"]
    digits = run_rows(blocks["Digits"])
    marks = [(row[1], row[2]) for row in digits]
    check = r"$\checkmark$"
    assert marks == [("--", "--"), (check, "--"), ("--", check), (check, check)]
    assert [row[3] for row in digits] == ["one seed", "one seed", "one seed", "2"]
    variants = ["no_ne_no_bn", "no_bn", "no_ne", "cd"]
    for row, variant in zip(digits, variants, strict=True):
        seeds = (42, 43) if variant == "cd" else (42,)
        for j, (stage, metric) in enumerate((s, m) for s in ("backbone", "feature") for m in METRICS):
            want = statistics.fmean(expected("digits", 128, variant, stage, metric, seeds))
            assert number(row[4 + j]) == round(want, 3), (variant, stage, metric)


def test_ablation_marks_are_the_variants_switches_in_the_params(tmp_path):
    """Flip a switch in the params and its mark flips; a variant the params lack gets "?"."""
    runs = [("digits", 128, v, (42,)) for v in ("no_ne_no_bn", "no_bn", "no_ne", "cd", "no_sched", "single_view")]
    variants = params_variants(
        no_bn={"entropy": True, "last_bn": True}, no_sched={"schedule": False, "grad_clip": True}
    )
    del variants["no_ne"]
    out = {
        p.name: p for p in tables.write_tables(results(make_metrics(runs), titles=TITLES, variants=variants), tmp_path)
    }
    check = r"$\checkmark$"
    t4 = run_rows(data_rows_by_dataset(out["table4.tex"].read_text(), header_rows=2)["Digits"])
    assert [(row[1], row[2]) for row in t4] == [("--", "--"), (check, check), ("?", "?"), (check, check)]
    t5 = run_rows(data_rows_by_dataset(out["table5.tex"].read_text(), header_rows=2)["Digits"])
    assert [row[1] for row in t5] == ["--", check]  # schedule and clipping must both be on
    t7 = run_rows(data_rows_by_dataset(out["table7.tex"].read_text(), header_rows=2)["Digits"])
    assert [(row[1], row[2]) for row in t7] == [("--", check), (check, check)]  # views: 1, then 2


def test_runs_of_another_method_go_to_table_other_and_all_csv(written, tmp_path):
    """A SimCLR run (variant ``simclr``, final stage ``projector``) breaks nothing: the paper's
    tables are as without it, table_other names its method and final stage, all.csv has it."""
    variants = params_variants(simclr={"method": "simclr"})
    metrics = make_metrics() + make_metrics(
        [("digits", 128, "simclr", (42,)), ("digits", 128, "cd", (7,))], method="simclr"
    )
    with pytest.raises(ValueError, match="disagree on method"):  # cd's seeds 42, 43 are CD runs
        tables.write_tables(results(metrics, BASELINES, TITLES, variants), tmp_path / "bad")
    metrics = metrics[:-1]
    out = {
        p.name: p
        for p in tables.write_tables(
            results(metrics, BASELINES, TITLES, variants), tmp_path / "t", results_label="results/embedded"
        )
    }
    for n in range(2, 11):
        assert out[f"table{n}.tex"].read_text() == written[f"table{n}.tex"].read_text(), n
    rows = rows_of(out["table_other.tex"].read_text())[2:]
    assert [tuple(r[:5]) for r in rows][-1] == ("Digits", "128", "SimCLR", "simclr", "projector")
    frame = pd.read_csv(out["all.csv"], keep_default_na=False, na_values=[""])
    mine = frame[frame.variant == "simclr"]
    assert set(mine.method) == {"simclr"} and set(mine.table) == {"other"}
    assert list(dict.fromkeys(mine.stage)) == ["backbone", "projector"]


def test_ablation_bold_is_the_best_of_each_column_within_a_dataset(written):
    for name in ("table4.tex", "table5.tex", "table6.tex", "table9.tex"):
        tex = written[name].read_text()
        first = rows_of(tex)[0].index("Seeds") + 1
        for block in data_rows_by_dataset(tex, header_rows=2).values():
            ours = [row for row in run_rows(block) if "Authors' repo" not in row]
            for col in range(first, len(block[0])):
                numbers = {i: number(row[col]) for i, row in enumerate(ours) if number(row[col]) is not None}
                bold = {i for i, row in enumerate(ours) if is_bold(row[col])}
                top = max(numbers.values()) if len(numbers) > 1 else None
                assert bold == {i for i, v in numbers.items() if v == top}, (name, col, block)
            assert not any(is_bold(c) for row in block if "Authors' repo" in row for c in row)


def test_tables_6_and_9_carry_the_authors_reference_rows(written):
    t6 = data_rows_by_dataset(written["table6.tex"].read_text(), header_rows=2)
    stl = [row for row in t6["STL-10"] if row[1] == "Authors' repo"]
    assert [row[4:] for row in stl] == [
        ["0.599 $\\pm$ 0.029", "0.458 $\\pm$ 0.043", "0.649 $\\pm$ 0.053"],
        ["0.679 $\\pm$ 0.007", "0.564 $\\pm$ 0.023", "0.720 $\\pm$ 0.026"],
    ]
    assert not any(row[1] == "Authors' repo" for row in t6["Digits"])
    t9 = data_rows_by_dataset(written["table9.tex"].read_text(), header_rows=2)
    assert [row[4] for row in t9["STL-10"] if row[1] == "Authors' repo"] == ["0.659 $\\pm$ 0.016", "0.674 $\\pm$ 0.015"]
    assert "projector" in written["table6.tex"].read_text()


def test_table5_and_8_use_the_feature_and_backbone_stage(written):
    t5 = data_rows_by_dataset(written["table5.tex"].read_text(), header_rows=2)["STL-10"]
    t8 = data_rows_by_dataset(written["table8.tex"].read_text(), header_rows=2)["STL-10"]
    assert number(t5[0][3]) == round(value("stl10", 128, "no_sched", 42, "feature", "nmi"), 3)
    assert number(t8[0][3]) == round(value("stl10", 128, "no_sched", 42, "backbone", "nmi"), 3)
    assert "Digits" not in data_rows_by_dataset(written["table5.tex"].read_text(), header_rows=2)


# --------------------------------------------------------------------------- missing data


def test_missing_runs_show_as_dashes_and_are_reported(written, tmp_path, caplog):
    t4 = written["table4.tex"].read_text()
    no_bn_row = run_rows(data_rows_by_dataset(t4, header_rows=2)["STL-10"])[1]
    assert no_bn_row[3:] == [""] + ["--"] * 6  # no seeds, no difference row under it
    assert not is_difference(data_rows_by_dataset(t4, header_rows=2)["STL-10"][3])
    assert r"Not run: no\_bn on STL-10." in t4
    t7 = written["table7.tex"].read_text()
    assert r"\begin{tabular}" not in t7 and "not reproduced" in t7 and r"single\_view" in t7
    not_run = written["table2.tex"].read_text().split("Not run: ", 1)[1].split("}", 1)[0]
    assert "CD-256 on R\\&D\\_photos \\#1" in not_run and "pixel K-means on CIFAR-10" in not_run
    assert "STL-10" not in not_run  # stl10 has its pixel K-means, CD-128 and CD-256
    with caplog.at_level(logging.WARNING, logger="cdrepro.tables"):
        paths = tables.write_tables(results([]), tmp_path / "empty")
    assert sorted(p.name for p in paths) == sorted(
        [f"table{n}.tex" for n in range(2, 11)] + ["all.csv", "differences.csv", "table_other.tex"]
    )
    assert any("table 4" in r.getMessage() for r in caplog.records)


def test_unknown_variants_and_batch_sizes_go_to_table_other(written, tmp_path):
    rows = rows_of(written["table_other.tex"].read_text())[2:]
    assert [tuple(r[:5]) for r in rows] == [
        ("Digits", "64", "CD", "cd", "feature"),
        ("Digits", "128", "CD", r"wide\_head", "feature"),
    ]
    assert rows[1][5] == "one seed"
    assert number(rows[1][6]) == round(value("digits", 128, "wide_head", 42, "backbone", "nmi"), 3)
    assert number(rows[1][9]) == round(value("digits", 128, "wide_head", 42, "feature", "nmi"), 3)
    for n in range(2, 11):
        assert "wide" not in written[f"table{n}.tex"].read_text()
    paths = tables.write_tables(results(make_metrics([("stl10", 128, "cd", (1,))])), tmp_path / "t")
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
            widths = {
                sum(int(m[1]) if (m := re.match(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in row)
                for row in rows_of(text)
            }
            assert len(widths) == 1, (name, widths)  # an unescaped & would add a cell
    assert latex.latex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


# -------------------------------------------------------------------------------- all.csv


def test_all_csv_holds_every_input_number(written):
    frame = pd.read_csv(written["all.csv"], keep_default_na=False, na_values=[""])
    ours = frame[frame.source == "ours"]
    for run in make_metrics():
        for stage, scores in run["stages"].items():
            for metric in METRICS:
                hit = ours[
                    (ours.dataset == run["dataset"])
                    & (ours.batch_size == run["batch_size"])
                    & (ours.variant == run["variant"])
                    & (ours.stage == stage)
                    & (ours.metric == metric)
                ]
                assert len(hit) == 1
                assert hit.iloc[0]["method"] == "cd"
                assert hit.iloc[0]["stage_role"] == ("backbone" if stage == "backbone" else "final")
                seeds = [int(s) for s in str(hit.iloc[0]["seeds"]).split(";")]
                values = [float(v) for v in str(hit.iloc[0]["values"]).split(";")]
                assert values[seeds.index(run["seed"])] == scores[metric]
                assert hit.iloc[0]["mean"] == pytest.approx(statistics.fmean(values))
    for base in BASELINES:
        hit = ours[(ours.dataset == base["dataset"]) & (ours.variant == BASELINE_VARIANT)]
        assert {r.metric: r.mean for r in hit.itertuples()} == base["pixels"]
        assert set(hit.stage) == {"pixels"} and set(hit.stage_role) == {"backbone"}
    assert ours[ours.variant == "wide_head"]["table"].eq("other").all()


def test_all_csv_holds_the_papers_and_the_authors_numbers(written):
    frame = pd.read_csv(written["all.csv"], keep_default_na=False, na_values=[""])
    paper = load_paper_results()
    assert len(paper) == 4 * 9 + 4 * 8
    got = frame[frame.source == "paper"]
    for rec in paper.itertuples():
        for metric in METRICS:
            hit = got[
                (got.table.astype(str) == rec.table)
                & (got.dataset == rec.dataset)
                & (got.method == rec.method)
                & (got.metric == metric)
            ]
            assert hit["mean"].tolist() == [getattr(rec, metric)]
    cd128 = got[
        (got.dataset == "cifar10") & (got.variant == "cd") & (got.batch_size == 128) & (got.stage == "backbone")
    ]
    assert sorted(cd128["mean"]) == [0.620, 0.725, 0.800]
    repo = frame[frame.source == "authors_repo"]
    assert len(repo) == 8 * 3
    hit = repo[
        (repo.dataset == "imagenet10")
        & (repo.variant == "no_head")
        & (repo.stage_role == "final")
        & (repo.metric == "ari")
    ].iloc[0]
    assert (hit["mean"], hit["std"], hit["stage"], hit["method"]) == (0.413, 0.060, "projector", "cd")
    assert set(repo[repo.stage_role == "final"]["table"]) == {"6"}


# ------------------------------------------------------------------------- seed statistics


def hand_made(variant: str, final: dict[int, float]) -> list[dict]:
    """Digits runs at batch 128 of CD's ``variant``, one per seed, with these final-stage NMIs."""
    runs = make_metrics([("digits", 128, variant, tuple(final))])
    for run in runs:
        run["stages"]["feature"]["nmi"] = final[run["seed"]]
    return runs


# cd and no_ne share seeds 1-3 (seed 4: cd only); no_bn differs from cd well beyond the noise.
CD_NMI = {1: 0.60, 2: 0.64, 3: 0.61, 4: 0.90}
NO_NE_NMI = {1: 0.62, 2: 0.61, 3: 0.63}
NO_BN_NMI = {1: 0.50, 2: 0.55, 3: 0.52}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> dict[str, Path]:
    metrics = hand_made("cd", CD_NMI) + hand_made("no_ne", NO_NE_NMI) + hand_made("no_bn", NO_BN_NMI)
    out = tmp_path_factory.mktemp("s") / "results" / "embedded" / "tables"
    return {p.name: p for p in tables.write_tables(results(metrics, titles=TITLES), out)}


def paired_interval(first: dict[int, float], second: dict[int, float]) -> tuple[float, float, float]:
    """Mean and scipy's paired t interval of first - second over the seeds both have."""
    shared = sorted(first.keys() & second.keys())
    a, b = [first[s] for s in shared], [second[s] for s in shared]
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    return statistics.fmean(a) - statistics.fmean(b), low, high


def test_ablation_tables_print_the_interval_and_each_ablations_difference_from_all_on(seeded):
    block = data_rows_by_dataset(seeded["table4.tex"].read_text(), header_rows=2)["Digits"]
    feature_nmi = 7  # Dataset, NE, BN, Seeds, then backbone NMI/ARI/ACC, then the feature's
    cd = next(row for row in run_rows(block) if (row[1], row[2]) == (r"$\checkmark$",) * 2)
    assert cd[3] == "4" and unbold(cd[feature_nmi]) == interval_cell(list(CD_NMI.values()))
    for variant, nmi, noise in (("no_ne", NO_NE_NMI, True), ("no_bn", NO_BN_NMI, False)):
        row = block[
            block.index(
                next(r for r in block if r[3] == "3" and unbold(r[feature_nmi]) == interval_cell(list(nmi.values())))
            )
            + 1
        ]
        assert is_difference(row) and row[2] == "3", row  # the seeds both share: 1-3
        mean, low, high = paired_interval(nmi, CD_NMI)
        cell = rf"${mean:+.3f} \pm {(high - low) / 2:.3f}$"
        assert row[feature_nmi - 1] == cell + (r"$^{\approx}$" if noise else ""), (variant, row)
    caption = seeded["table4.tex"].read_text().split(r"\caption{", 1)[1]
    assert "95\\% confidence interval" in caption and "within noise" in caption and "one seed" in caption


def test_differences_csv_and_all_csv_carry_the_intervals_and_the_paired_differences(seeded):
    differences = pd.read_csv(seeded["differences.csv"], keep_default_na=False, na_values=[""])
    row = differences[
        (differences.variant == "no_ne") & (differences.stage_role == "final") & (differences.metric == "nmi")
    ].iloc[0]
    mean, low, high = paired_interval(NO_NE_NMI, CD_NMI)
    assert (row.vs_variant, row.comparison, row.n_seeds, row.seeds) == ("cd", "ablation", 3, "1;2;3")
    assert (row["mean"], row.ci_low, row.ci_high) == (pytest.approx(mean), pytest.approx(low), pytest.approx(high))
    assert bool(row.within_noise) is True
    assert not differences[differences.variant == "no_bn"].within_noise.astype(bool).any()
    assert set(differences.variant) == {"no_ne", "no_bn"}  # two ablations are not compared with each other

    frame = pd.read_csv(seeded["all.csv"], keep_default_na=False, na_values=[""])
    for column in ("ci_low", "ci_high", "within_noise", "vs_variant", "comparison"):
        assert column in frame.columns, column
    cd = frame[
        (frame.source == "ours") & (frame.variant == "cd") & (frame.stage == "feature") & (frame.metric == "nmi")
    ]
    low, high = stats.t.interval(0.95, 3, loc=statistics.fmean(CD_NMI.values()), scale=stats.sem(list(CD_NMI.values())))
    assert (cd.iloc[0].ci_low, cd.iloc[0].ci_high) == (pytest.approx(low), pytest.approx(high))
    paired = frame[frame.source == "difference"]
    assert len(paired) == len(differences) and set(paired.table.astype(str)) == {"4"}
    assert (
        paired[["variant", "vs_variant", "stage_role", "metric", "mean"]].values.tolist()
        == differences[["variant", "vs_variant", "stage_role", "metric", "mean"]].values.tolist()
    )


def test_a_single_seed_says_one_seed_and_prints_no_interval(written):
    frame = pd.read_csv(written["all.csv"], keep_default_na=False, na_values=[""])
    ours = frame[frame.source == "ours"]
    single = ours[ours.n_seeds == 1]
    assert len(single) and single.ci_low.isna().all() and (single.note == "one seed").all()
    assert ours[ours.n_seeds > 1].note.isna().all() and ours[ours.n_seeds > 1].ci_low.notna().all()
    digits = data_rows_by_dataset(written["table4.tex"].read_text(), header_rows=2)["Digits"]
    no_ne = digits[digits.index(next(r for r in digits if (r[1], r[2]) == ("--", r"$\checkmark$"))) + 1]
    assert is_difference(no_ne) and no_ne[2] == "one seed"  # no_ne: seed 42; cd: seeds 42 and 43
    assert not any(r"\pm" in cell for cell in no_ne) and all(re.fullmatch(r"\$[+-][0-9.]+\$", c) for c in no_ne[3:])


# -------------------------------------------------------------------------------- writing


def test_every_file_is_written_atomically_and_returned(tmp_path, monkeypatch):
    seen: list[Path] = []
    real = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", lambda path, text: (seen.append(Path(path)), real(path, text)))
    out = tmp_path / "results" / "p" / "tables"
    paths = tables.write_tables(results(make_metrics(), BASELINES, TITLES), out)
    assert paths == seen
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert r"\texttt{results/p}" in (out / "table2.tex").read_text()
    assert "tab:cdrepro-other" in (out / "table_other.tex").read_text()


def test_every_csv_a_caption_cites_is_written_beside_it_or_ships_with_the_package(written, methods_written):
    """A caption's \\texttt{...csv} is a file of the same step or one of the package's
    cdrepro/references/ (Table 2's once cited a reference_results.csv that exists nowhere)."""
    shipped = {p.name for p in (REPO / "src" / "cdrepro" / "references").iterdir()}
    for files in (written, methods_written):
        for name, path in files.items():
            for cited in re.findall(r"\\texttt\{([^}]*\.csv)\}", path.read_text() if name.endswith(".tex") else ""):
                cited = cited.replace(r"\_", "_")
                assert cited in files or cited.removeprefix("cdrepro/references/") in shipped, (name, cited)
    assert r"\texttt{cdrepro/references/paper\_results.csv}" in written["table2.tex"].read_text()


def test_all_tables_compile_with_pdflatex(written, tmp_path):
    """docs/img/tables.tex (the document `make tables-pdf` compiles) \\inputs every table the
    code writes (and may input the methods table), and compiles with them without errors,
    undefined commands or overfull lines."""
    skip_unless_installed(
        None
        if shutil.which("pdflatex")
        else "pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended; .ci/apt-packages.txt)"
    )

    document = (REPO / "docs" / "img" / "tables.tex").read_text()
    inputs = set(re.findall(r"\\input\{results/embedded/tables/([^}]+)\}", document))
    tables_written = {Path(name).stem for name in written if name.endswith(".tex")}
    assert tables_written <= inputs <= tables_written | {"methods"}, inputs ^ tables_written
    tables_dir = tmp_path / "tables"
    for name, path in written.items():
        atomic.write_text(tables_dir / name, path.read_text())
    comparison_table.write_comparison_table(
        results(method_metrics(), METHOD_BASELINES, TITLES, CC_VARIANTS), tables_dir
    )
    doc = tmp_path / "tables.tex"
    doc.write_text(document.replace("results/embedded/tables/", f"{tables_dir.as_posix()}/"))
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Overfull \\hbox" not in log, log[-3000:]
    pages = re.search(r"Output written on tables\.pdf \((\d+) pages?", log)
    assert pages and int(pages[1]) > 1 and (tmp_path / "tables.pdf").read_bytes().startswith(b"%PDF")


# --------------------------------------------------------------------------- "Ours CC" in Tables 2-3

CC_VARIANTS = params_variants(
    wide_head={"feature_num": 512}, cc_published={"method": "cc", "schedule": False, "grad_clip": False}
)


def with_cc(runs) -> list[dict]:
    """The fixture's CD runs plus CC runs (method cc, final stage ``cluster``)."""
    cc = make_metrics(runs, method="cc")
    for record in cc:
        record["stages"]["cluster"] = record["stages"].pop("projector")
        record["final_stage"] = "cluster"
    return make_metrics() + cc


def test_tables_2_and_3_have_ours_cc_beside_the_papers_cc_only_where_a_cc_run_exists(written, tmp_path):
    for name in ("table2.tex", "table3.tex"):
        assert not any("Ours CC" in c for c in rows_of(written[name].read_text())[0]), name
    metrics = with_cc([("digits", 128, "cc", (42,)), ("stl10", 256, "cc_published", (42, 43))])
    out = {
        p.name: p
        for p in tables.write_tables(
            results(metrics, BASELINES, TITLES, CC_VARIANTS), tmp_path, results_label="results/embedded"
        )
    }
    for name, stage in (("table2.tex", "backbone"), ("table3.tex", "feature")):
        tex = out[name].read_text()
        header = rows_of(tex)[0]
        at = header.index("CC")
        assert header[at + 1 : at + 3] == ["Ours CC-128", r"Ours CC-256 (cc\_published)"], header
        assert number(stage_table_cell(tex, "Digits", "ari", "Ours CC-128")) == round(
            value("digits", 128, "cc", 42, stage, "ari"), 3
        )
        vals = expected("stl10", 256, "cc_published", stage, "nmi", (42, 43))
        cell = stage_table_cell(tex, "STL-10", "nmi", r"Ours CC-256 (cc\_published)")
        assert unbold(cell) == interval_cell(vals)
        assert stage_table_cell(tex, "STL-10", "nmi", "Ours CC-128") == "--"
        caption = tex.split(r"\caption{", 1)[1]
        assert r"Ours CC-128 is our CC (variant \texttt{cc}) at batch size 128 under CD's protocol" in caption
        assert "CC-256 (cc\\_published) is our CC" in caption and "CC's published recipe" in caption
        assert "CC-128 on" not in caption.split("Not run:", 1)[-1]  # an extra column, not a missing run
    assert "argmax of its cluster head" in out["table3.tex"].read_text()
    assert "CIFAR-100-20 and STL-10 (methods.tex shows both)" in out["table3.tex"].read_text()
    # Shown in Tables 2-3, so not in table_other; all.csv says which table holds them.
    assert [r[2] for r in rows_of(out["table_other.tex"].read_text())[2:]] == ["CD", "CD"]  # cd at 64, wide_head
    frame = pd.read_csv(out["all.csv"], keep_default_na=False, na_values=[""])
    cc = frame[(frame.source == "ours") & (frame.method == "cc")]
    assert dict(zip(cc.stage_role, cc.table.astype(str), strict=True)) == {"backbone": "2", "final": "3"}
    # The CD columns and the ablation tables are as without the CC runs.
    for n in range(4, 11):
        assert out[f"table{n}.tex"].read_text() == written[f"table{n}.tex"].read_text(), n


def test_a_cc_run_at_another_batch_size_gets_no_ours_cc_column(tmp_path):
    metrics = with_cc([("digits", 64, "cc", (42,))])
    out = {p.name: p for p in tables.write_tables(results(metrics, BASELINES, TITLES, CC_VARIANTS), tmp_path)}
    assert not any("Ours CC" in c for c in rows_of(out["table2.tex"].read_text())[0])
    other = [tuple(r[:5]) for r in rows_of(out["table_other.tex"].read_text())]
    assert ("Digits", "64", "CC", "cc", "cluster") in other


# --------------------------------------------------------------------------- the methods table

FINAL_STAGES = {"cd": "feature", "simclr": "projector", "cc": "cluster", "cld": "group", "cdc": "cluster"}
METHOD_RUNS = {  # method -> (dataset, batch size, variant, seeds)
    "cd": [("stl10", 128, "cd", (42, 43)), ("digits", 128, "cd", (42,))],
    "simclr": [("stl10", 128, "simclr", (42,)), ("digits", 128, "simclr", (42,))],
    "cc": [("stl10", 128, "cc", (42,)), ("stl10", 256, "cc_published", (42,)), ("digits", 128, "cc", (42,))],
    "cld": [("stl10", 128, "cld", (42,)), ("digits", 128, "cld", (42,))],
    "cdc": [("stl10", 128, "cdc", (42,)), ("digits", 128, "cdc", (42,))],
}


def method_metrics(method_runs: dict = METHOD_RUNS) -> list[dict]:
    """One run group per method and dataset (CC twice on STL-10), each final stage named as its
    method names it; ``value`` keys the final stage's numbers by "feature" whatever its name."""
    out = []
    for method, runs in method_runs.items():
        for record in make_metrics(runs, method=method):
            final = record["stages"].pop(record["final_stage"])
            record["stages"][FINAL_STAGES[method]] = final
            record["final_stage"] = FINAL_STAGES[method]
            out.append(record)
    return out


# STL-10's pixel K-means above every method, so that ranking it would show.
METHOD_BASELINES = [{**BASELINES[0], "pixels": {"nmi": 0.991, "ari": 0.992, "acc": 0.993}}, BASELINES[1]]


@pytest.fixture(scope="module")
def methods_written(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("m") / "results" / "embedded" / "tables"
    inputs = results(method_metrics(), METHOD_BASELINES, TITLES, CC_VARIANTS)
    return {p.name: p for p in comparison_table.write_comparison_table(inputs, out)}


def methods_block(tex: str, title: str) -> list[list[str]]:
    """The rows of one dataset's block of methods.tex (6 lead columns, then 6 numbers, then the 3
    held-out accuracies)."""
    return data_rows_by_dataset(tex, header_rows=2)[title]


def test_the_methods_table_has_a_row_per_method_and_the_pixel_row(methods_written):
    tex = methods_written["methods.tex"].read_text()
    for title, cc_rows in (("STL-10", ["CC", r"CC (cc\_published)"]), ("Digits", ["CC"])):
        block = methods_block(tex, title)
        ours = [row[1] for row in block if row[3] == "Ours"]
        assert ours == ["K-means (raw pixels)", "CD", "SimCLR", *cc_rows, "CLD", "CDC (reconstructed)"], ours
    stl = methods_block(tex, "STL-10")
    pixels = next(row for row in stl if row[1] == "K-means (raw pixels)")
    assert pixels[6:9] == ["0.991", "0.992", "0.993"]  # a reference: not bold, although the highest
    assert pixels[9:] == ["--"] * 3 and pixels[5] == ""  # no final stage (held-out accuracy: a table of its own)
    cd = next(row for row in stl if row[1] == "CD")
    assert (cd[2], cd[4], cd[5]) == ("128", "feature", "2")
    vals = expected("stl10", 128, "cd", "feature", "acc", (42, 43))
    assert unbold(cd[11]) == interval_cell(vals)
    cdc = next(row for row in stl if row[1] == "CDC (reconstructed)")
    assert cdc[4] == "cluster" and number(cdc[9]) == round(value("stl10", 128, "cdc", 42, "feature", "nmi"), 3)
    assert cdc[5] == "one seed" and not any(r"\pm" in cell for cell in cdc)


def test_methods_table_bold_is_the_best_method_per_column_not_a_reference(methods_written):
    for title in ("STL-10", "Digits"):
        block = methods_block(methods_written["methods.tex"].read_text(), title)
        methods = [row for row in block if row[3] == "Ours" and row[1] != "K-means (raw pixels)"]
        for col in range(6, 12):
            numbers = {i: number(row[col]) for i, row in enumerate(methods) if number(row[col]) is not None}
            top = max(numbers.values())
            assert {i for i, row in enumerate(methods) if is_bold(row[col])} == {
                i for i, v in numbers.items() if v == top
            }, (title, col)
        assert not any(is_bold(c) for row in block if row not in methods for c in row), title


def _published(block: list[list[str]], method: str) -> list[list[str]]:
    """The published rows under one of our methods' rows (until the next method's)."""
    start = next(i for i, row in enumerate(block) if row[1] == method)
    rows = []
    for row in block[start + 1 :]:
        if row[1]:
            if rows or row[3] != "Ours":
                break
            continue  # another variant of the same method
        rows.append(row)
    return rows


def test_the_methods_table_puts_the_published_numbers_beside_ours_with_their_sources(methods_written):
    tex = methods_written["methods.tex"].read_text()
    stl = methods_block(tex, "STL-10")
    # CD: its paper's CD-128 (we ran CD at 128 only).
    (cd,) = _published(stl, "CD")
    assert cd[3] == "CD's paper: CD-128" and [number(c) for c in cd[6:12]] == [0.670, 0.523, 0.684, 0.687, 0.549, 0.702]
    # CC: CC's own paper (final stage) and CD's paper's CC column (both stages), each labelled.
    cc = {re.sub(r"\$\^\{.*\}\$", "", row[3]): row for row in _published(stl, r"CC (cc\_published)")}
    assert set(cc) == {"CD's paper: CC", "CC's paper"}
    assert [number(c) for c in cc["CD's paper: CC"][6:12]] == [0.608, 0.443, 0.594, 0.622, 0.539, 0.670]
    assert cc["CC's paper"][6:9] == ["--"] * 3 and [number(c) for c in cc["CC's paper"][9:12]] == [0.764, 0.726, 0.850]
    assert cc["CC's paper"][10].endswith(r"$^{\ast}$") and not cc["CC's paper"][9].endswith(r"$^{\ast}$")
    assert cc["CC's paper"][2] == "256" and cc["CC's paper"][4] == "cluster"
    # Where the two disagree (STL-10), both rows carry the same mark, and the caption says so.
    caption = tex.split(r"\caption{", 1)[1].split(r"\label", 1)[0]
    mark = next(m for m, note in re.findall(r"\$(\\[a-zA-Z|]+)\$: ([^.]*)", caption) if "disagree" in note)
    assert all(mark in row[3] for row in cc.values())
    assert r"$^{\ast}$: not confirmed" in caption and "unlabeled" in caption
    # SimCLR: the CD authors' repository's no-head model, mean +- std.
    (simclr,) = _published(stl, "SimCLR")
    assert simclr[3].startswith("CD authors' repository: no-head model") and simclr[9] == "0.599 $\\pm$ 0.029"
    # CLD and CDC: a row that says there is nothing published.
    for method, says in (("CLD", "no published NMI/ARI/ACC"), ("CDC (reconstructed)", "no published numbers")):
        (row,) = _published(stl, method)
        assert row[3] == "published" and says in row[6], row
    # The pixel baseline: CD's paper's K-means beside ours.
    (kmeans,) = _published(stl, "K-means (raw pixels)")
    assert kmeans[3] == "CD's paper: K-means" and [number(c) for c in kmeans[6:9]] == [0.125, 0.061, 0.192]
    # Digits: nothing published but the "none" rows.
    assert [row[3] for row in methods_block(tex, "Digits") if not row[1]] == ["published", "published"]


def test_the_methods_csv_has_one_row_per_number_and_source(methods_written):
    frame = pd.read_csv(methods_written["methods.csv"], keep_default_na=False, na_values=[""])
    numbers = frame[frame.metric.notna()]
    key = ["method", "variant", "dataset", "batch_size", "stage_role", "stage", "metric", "source"]
    assert not numbers.duplicated(key).any()
    for run in method_metrics():
        for stage in run["stages"]:
            hit = numbers[
                (numbers.source == "ours")
                & (numbers.dataset == run["dataset"])
                & (numbers.variant == run["variant"])
                & (numbers.stage == stage)
            ]
            assert set(hit.metric) == set(METRICS) and set(hit.method) == {run["method"]}
    cc = numbers[(numbers.dataset == "stl10") & (numbers.method == "cc") & (numbers.source != "ours")]
    assert set(cc.source_label) == {"CD's paper: CC", "CC's paper"}
    assert cc[~cc.confirmed.astype(bool)][["source", "metric"]].values.tolist() == [["cc_paper", "ari"]]
    assert cc[cc.stage_role == "final"].note.str.contains("disagree").all()
    assert not cc[cc.stage_role == "backbone"].note.str.contains("disagree").any()  # only CD's paper has these
    assert set(numbers[numbers.method == "cdc"].method_label) == {"CDC (reconstructed)"}
    none = frame[frame.source == "none"]
    assert sorted(set(none.method)) == ["cdc", "cld"] and none.metric.isna().all()


def test_the_methods_table_and_its_csvs_carry_intervals_and_paired_differences(tmp_path):
    runs = {
        "cd": [("stl10", 128, "cd", (1, 2, 3))],
        "simclr": [("stl10", 128, "simclr", (2, 3, 4))],
        "cc": [("stl10", 128, "cc", (1,))],
    }
    nmi = {"cd": {1: 0.60, 2: 0.64, 3: 0.61}, "simclr": {2: 0.55, 3: 0.57, 4: 0.90}, "cc": {1: 0.50}}
    metrics = method_metrics(runs)
    for run in metrics:
        run["stages"][run["final_stage"]]["nmi"] = nmi[run["method"]][run["seed"]]
    out = {
        p.name: p
        for p in comparison_table.write_comparison_table(
            results(metrics, METHOD_BASELINES[:1], TITLES, CC_VARIANTS), tmp_path
        )
    }

    frame = pd.read_csv(out["methods.csv"], keep_default_na=False, na_values=[""])
    final_nmi = frame[(frame.source == "ours") & (frame.stage_role == "final") & (frame.metric == "nmi")]
    cd = final_nmi[final_nmi.method == "cd"].iloc[0]
    values = list(nmi["cd"].values())
    low, high = stats.t.interval(0.95, 2, loc=statistics.fmean(values), scale=stats.sem(values))
    assert (cd.ci_low, cd.ci_high) == (pytest.approx(low), pytest.approx(high)) and pd.isna(cd.note)
    cc = final_nmi[final_nmi.method == "cc"].iloc[0]
    assert pd.isna(cc.ci_low) and cc.note == "one seed"

    differences = pd.read_csv(out["methods_differences.csv"], keep_default_na=False, na_values=[""])
    row = differences[
        (differences.method == "cd")
        & (differences.vs_method == "simclr")
        & (differences.stage_role == "final")
        & (differences.metric == "nmi")
    ].iloc[0]
    mean, low, high = paired_interval(nmi["cd"], nmi["simclr"])
    assert (row.seeds, row["mean"], row.ci_low, row.ci_high) == (
        "2;3",
        pytest.approx(mean),
        pytest.approx(low),
        pytest.approx(high),
    )
    assert (row.method_label, row.vs_method_label) == ("CD", "SimCLR")

    tex = out["methods.tex"].read_text()
    (part,) = [part for part in tex.split(r"\end{table}") if "tab:cdrepro-methods-differences" in part]
    rows = {row[2]: row for row in rows_of(part)[2:]}
    assert list(rows) == ["CD $-$ SimCLR", "CD $-$ CC", "SimCLR $-$ CC"]
    assert low < 0 < high  # two shared seeds: t has one degree of freedom, the interval is wide
    assert rows["CD $-$ SimCLR"][3] == "2"
    assert rows["CD $-$ SimCLR"][7] == rf"${mean:+.3f} \pm {(high - low) / 2:.3f}$$^{{\approx}}$"
    assert rows["CD $-$ CC"][3] == "one seed" and not any(r"\pm" in cell for cell in rows["CD $-$ CC"])
    assert rows["SimCLR $-$ CC"][3] == "no shared seed" and rows["SimCLR $-$ CC"][4:] == ["--"] * 6
    caption = tex.split(r"\caption{", 1)[1]
    assert r"95\% confidence interval" in caption and "one seed: the plain value" in caption


def test_the_methods_table_compiles_with_pdflatex(tmp_path):
    """A paper-sized methods.tex (four datasets, every method, CC's two recipes, two seeds: the
    widest cells and the most rows) in the preamble of docs/img/tables.tex (landscape A4):
    no error, no overfull line, and it fits one page."""
    skip_unless_installed(
        None
        if shutil.which("pdflatex")
        else "pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended; .ci/apt-packages.txt)"
    )
    datasets = ("cifar10", "cifar100_20", "stl10", "imagenet10")
    paper_sized = {
        method: [(d, b, v, (42, 43)) for d in datasets for where, b, v, _ in runs if where == "stl10"]
        for method, runs in METHOD_RUNS.items()
    }
    baselines = [{**BASELINES[0], "dataset": d} for d in datasets]
    comparison_table.write_comparison_table(
        results(method_metrics(paper_sized), baselines, TITLES, CC_VARIANTS), tmp_path
    )
    preamble = (REPO / "docs" / "img" / "tables.tex").read_text().split(r"\begin{document}")[0]
    (tmp_path / "methods_doc.tex").write_text(preamble + "\\begin{document}\n\\input{methods}\n\\end{document}\n")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "methods_doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    log = (tmp_path / "methods_doc.log").read_text(errors="replace")
    for problem in ("Undefined control sequence", "Overfull \\hbox", "Float too large"):
        assert problem not in log, (problem, log[-3000:])
    tex = (tmp_path / "methods.tex").read_text()
    floats = tex.split(r"\end{table}")[:-1]
    tabulars = [rows_of(part) for part in floats if "cdrepro-methods-differences" not in part]
    assert len(tabulars) == 2 and sum(len(rows) - 2 for rows in tabulars) > 50  # continued, not cut
    assert tabulars[1][0] == tabulars[0][0] and r"\label{tab:cdrepro-methods-2}" in tex
    # The paired differences: 10 pairs of 5 methods on each of 4 datasets, in floats of their own.
    differences = [rows_of(part) for part in floats if "cdrepro-methods-differences" in part]
    assert len(differences) >= 2 and sum(len(rows) - 2 for rows in differences) == 40


def test_a_methods_table_without_runs_is_a_note(tmp_path):
    paths = comparison_table.write_comparison_table(results([]), tmp_path)
    assert [p.name for p in paths] == ["methods.tex", "methods.csv", "methods_differences.csv"]
    assert "tabular" not in paths[0].read_text() and "no run" in paths[0].read_text()


def test_a_new_table_file_is_one_entry_of_the_declaration(monkeypatch, tmp_path):
    """TABLE_FILES is the tables step's declaration: an entry added there is written by the CLI's
    step, declared by the workflow's rule (cdrepro.steps) and by DVC's stage (dvc.yaml, generated
    from the same steps), with no other edit (the Snakemake-DVC agreement itself is
    tests/workflow/test_dvc.py::test_dvc_stages_are_the_snakemake_jobs)."""
    from cdrepro.dvc_stages import render
    from cdrepro.runs import ProfilePaths
    from cdrepro.steps import STEPS

    monkeypatch.setitem(tables.TABLE_FILES, "extra.csv", lambda inputs: "a,b\n1,2\n")
    out = tmp_path / "results" / "embedded" / "tables"
    written = tables.write_tables(results(make_metrics(), BASELINES, TITLES), out)
    assert out / "extra.csv" in written and (out / "extra.csv").read_text() == "a,b\n1,2\n"
    rule = STEPS["tables"].output(ProfilePaths(tmp_path / "results" / "embedded"))
    assert sorted(Path(p) for p in rule.values()) == sorted(written)
    assert "      - ${results_dir}/${profile}/tables/extra.csv\n" in render()
