"""The long-tail table (issue 22, CLD's claim): each method on a balanced training set and on
long-tailed ones, and the change, on hand-made metrics."""

from __future__ import annotations

import csv

import pytest
from shift_records import metrics_record, profile_results  # tests/ is on sys.path

from cdrepro.comparison.long_tail import LONG_TAIL_TABLE_FILES, long_tail_frame, write_long_tail_table
from cdrepro.results import ProfileResults

TITLES = {"cifar10_train": "CIFAR-10 train", "cifar10_lt10": "CIFAR-10-LT-10", "cifar10_lt100": "CIFAR-10-LT-100"}
RATIO = {"cifar10_train": None, "cifar10_lt10": 10.0, "cifar10_lt100": 100.0}


def record(dataset: str, method: str, knn: float) -> dict:
    training_set: dict = {"split": "official"}
    if RATIO[dataset]:
        training_set["long_tail"] = {"imbalance_ratio": RATIO[dataset], "seed": 0}
    stages = {
        "backbone": {"nmi": 0.5, "ari": 0.4, "acc": 0.6, "knn": knn, "linear": knn + 0.05},
        "cluster": {"nmi": 0.45, "ari": 0.3, "acc": 0.55, "knn": knn - 0.1},
    }
    return metrics_record(dataset, method, stages, "cluster", 10, training_set=training_set)


def results(*metrics: dict) -> ProfileResults:
    return profile_results(list(metrics), TITLES)


def test_the_change_is_each_ratios_score_minus_the_balanced_one(tmp_path):
    runs = results(
        record("cifar10_lt100", "cc", 0.60),  # listed first: the order is the ratio's, not the list's
        record("cifar10_train", "cc", 0.80),
        record("cifar10_lt10", "cc", 0.72),
        record("cifar10_train", "cld", 0.82),
        record("cifar10_lt10", "cld", 0.79),
        record("cifar10_lt100", "cld", 0.70),
    )
    frame = long_tail_frame(runs)
    knn = frame[(frame.stage_role == "backbone") & (frame.metric == "knn")]
    assert list(zip(knn.method, knn.imbalance_ratio, strict=True)) == [
        (m, r) for m in ("cc", "cld") for r in (1.0, 10.0, 100.0)
    ]
    assert knn["change"].isna().tolist() == [True, False, False] * 2  # none at the balanced set
    assert knn["change"].dropna().tolist() == pytest.approx([-0.08, -0.20, -0.03, -0.12])

    written = write_long_tail_table(runs, tmp_path)
    assert [p.name for p in written] == list(LONG_TAIL_TABLE_FILES)
    tex = (tmp_path / "long_tail.tex").read_text()
    assert "CIFAR-10 train (balanced)" in tex and "CIFAR-10-LT-100 (ratio 100)" in tex
    # kNN, linear (backbone), NMI, ACC (final) balanced; then their change at 10 and at 100.
    assert r"cc & 128 & 0.800 & 0.850 & 0.450 & 0.550 & -0.080 & -0.080 & +0.000 & +0.000 & -0.200 & -0.200" in tex
    rows = list(csv.DictReader((tmp_path / "long_tail.csv").open()))
    assert len(rows) == 2 * 3 * (5 + 4)  # methods x datasets x (backbone's 5 scores + the final's 4)
    assert {row["imbalance_ratio"] for row in rows} == {"1.000000", "10.000000", "100.000000"}


def test_runs_at_one_ratio_get_their_numbers_and_a_caption_that_says_no_change(tmp_path):
    metrics = [record("cifar10_train", "cc", 0.8), record("cifar10_train", "cdc", 0.7)]
    del metrics[1]["training_set"]  # a run from before training sets: every image, ratio 1
    write_long_tail_table(results(*metrics), tmp_path)
    tex = (tmp_path / "long_tail.tex").read_text()
    assert "no change to show" in tex and "(ratio" not in tex
    assert r"cdc & 128 & 0.700 & 0.750 & 0.450 & 0.550 \\" in tex
    assert all(row["change"] == "" for row in csv.DictReader((tmp_path / "long_tail.csv").open()))
