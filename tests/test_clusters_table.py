"""The many-clusters table (issue 22, CDC's claim): each method at its runs' fewest and most
clusters and the change between them, on hand-made metrics."""

from __future__ import annotations

import csv

import pytest
from shift_records import metrics_record, profile_results  # tests/ is on sys.path

from cdrepro.comparison.clusters import CLUSTERS_TABLE_FILES, clusters_frame, write_clusters_table
from cdrepro.results import ProfileResults

TITLES = {"cifar100_20": "CIFAR-100-20", "cifar100": "CIFAR-100"}
K = {"cifar100_20": 20, "cifar100": 100}


def record(dataset: str, method: str, final: str, nmi: float) -> dict:
    stages = {"backbone": {"nmi": nmi + 0.1, "ari": 0.4, "acc": 0.5}, final: {"nmi": nmi, "ari": 0.3, "acc": 0.4}}
    return metrics_record(dataset, method, stages, final, K[dataset])


def results(*metrics: dict) -> ProfileResults:
    return profile_results(list(metrics), TITLES)


def test_the_change_is_the_most_clusters_minus_the_fewest_per_method_stage_and_score(tmp_path):
    runs = results(
        record("cifar100", "cc", "cluster", 0.30),  # K = 100 listed first: the order is K's, not the list's
        record("cifar100_20", "cc", "cluster", 0.45),
        record("cifar100_20", "cdc", "cluster", 0.40),
        record("cifar100", "cdc", "cluster", 0.38),
    )
    frame = clusters_frame(runs)
    final_nmi = frame[(frame.stage_role == "final") & (frame.metric == "nmi")]
    assert list(zip(final_nmi.method, final_nmi.k, strict=True)) == [("cc", 20), ("cc", 100), ("cdc", 20), ("cdc", 100)]
    assert final_nmi["change"].isna().tolist() == [True, False, True, False]  # none at the fewest
    assert final_nmi["change"].dropna().tolist() == pytest.approx([0.30 - 0.45, 0.38 - 0.40])

    written = write_clusters_table(runs, tmp_path)
    assert [p.name for p in written] == list(CLUSTERS_TABLE_FILES)
    tex = (tmp_path / "many_clusters.tex").read_text()
    assert r"CIFAR-100-20 ($K=20$)" in tex and r"CIFAR-100 ($K=100$)" in tex and "Change" in tex
    assert r"cc & 128 & 0.450 & 0.300 & 0.400 & 0.300 & 0.300 & 0.400 & -0.150 & +0.000 & +0.000 \\" in tex
    rows = list(csv.DictReader((tmp_path / "many_clusters.csv").open()))
    assert len(rows) == 2 * 2 * 2 * 3  # methods x datasets x stages x scores
    assert {row["k"] for row in rows} == {"20", "100"}


def test_runs_at_one_k_get_their_numbers_and_a_caption_that_says_no_change(tmp_path):
    runs = results(record("cifar100_20", "cc", "cluster", 0.45), record("cifar100_20", "cdc", "cluster", 0.40))
    write_clusters_table(runs, tmp_path)
    tex = (tmp_path / "many_clusters.tex").read_text()
    assert "no change to show" in tex and "Change" not in tex
    assert r"cdc & 128 & 0.400 & 0.300 & 0.400 \\" in tex
    assert all(row["change"] == "" for row in csv.DictReader((tmp_path / "many_clusters.csv").open()))
