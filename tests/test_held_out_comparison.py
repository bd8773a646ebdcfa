"""The methods table with held-out accuracies (issue 22): our kNN and linear-probe columns, and
CLD's published kNN beside ours, with its setting, where we ran CLD on its dataset."""

from __future__ import annotations

import pandas as pd
from shift_records import metrics_record  # tests/ is on sys.path

from cdrepro.comparison.frame import comparison_frame
from cdrepro.comparison.table import held_out_words, render_comparison_table
from cdrepro.published import (
    load_cc_results,
    load_knn_results,
    load_paper_results,
    load_repo_variability,
    published_rows,
)
from cdrepro.results import BASELINE_VARIANT, ProfileResults

TITLES = {"cifar10": "CIFAR-10", "digits": "Digits"}


def record(dataset: str, method: str, final: str, knn: float | None = 0.6) -> dict:
    """A metrics.json record of one run; ``knn`` None: written before issue 22 (no held-out keys)."""
    stages = {name: {"nmi": 0.5, "ari": 0.4, "acc": 0.6} for name in ("backbone", final)}
    held_out = {}
    if knn is not None:
        for name in stages:
            stages[name]["knn"] = knn
        stages["backbone"]["linear"] = 0.7
        split = {"kind": "official", "n_train": 50000, "n_test": 10000}
        held_out = {"held_out": {"split": split, "knn": {"k": 200, "temperature": 0.07}, "linear": {}}}
    return metrics_record(dataset, method, stages, final, 10, **held_out)


def baseline(dataset: str) -> dict:
    return {"dataset": dataset, "n_images": 100, "num_classes": 10, "pixels": {"nmi": 0.1, "ari": 0.1, "acc": 0.2}}


def frame_of(*metrics: dict) -> tuple[pd.DataFrame, ProfileResults]:
    results = ProfileResults(list(metrics), [baseline(d) for d in sorted({m["dataset"] for m in metrics})], TITLES)
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability(), load_knn_results())
    return comparison_frame(results, published), results


def test_clds_row_shows_our_knn_beside_its_published_86_7_with_its_setting():
    frame, results = frame_of(record("cifar10", "cld", "group"), record("cifar10", "simclr", "projector"))
    cld = frame[(frame.method == "cld") & (frame.dataset == "cifar10")]
    assert "none" not in set(cld.source), "a published number exists: no 'nothing published' row"
    ours = cld[(cld.source == "ours") & (cld.metric == "knn")]
    assert dict(zip(ours.stage_role, ours["mean"], strict=True)) == {"backbone": 0.6, "final": 0.6}
    paper = cld[(cld.source == "cld_paper") & (cld.paper_column == "NPID+CLD")].iloc[0]
    assert (paper["mean"], paper.setting, paper.source_label) == (0.867, "k = 200, T = 0.1", "CLD's paper: NPID+CLD")

    tex = render_comparison_table(frame, TITLES, "results/x", held_out=held_out_words(results.metrics))
    assert "kNN h & kNN final & Linear h" in tex and "Held-out accuracy" in tex
    row = next(line for line in tex.splitlines() if "CLD's paper: NPID+CLD" in line)
    cells = [c.strip() for c in row.rstrip("\\ ").split("&")]
    assert cells[-3:] == ["--", "0.867", "--"]  # kNN in the final-stage column; no NMI/ARI/ACC
    assert cells[4] == "projection z"  # what it is measured on, in the stage column
    assert "k = 200, T = 0.1 on the 128-d L2-normalised projection" in tex  # its note, marked
    assert "k = 200, T = 0.07" in tex and "cifar10 official 50,000 / 10,000" in tex  # ours, in the caption


def test_where_clds_dataset_differs_its_row_says_where_its_published_knn_is():
    frame, _ = frame_of(record("digits", "cld", "group"))
    (none,) = frame[(frame.method == "cld") & (frame.source == "none")].to_dict("records")
    assert "no published NMI/ARI/ACC" in none["note"]
    assert "cifar10 0.867 (NPID+CLD, k = 200, T = 0.1)" in none["note"]


def test_runs_evaluated_before_held_out_accuracies_still_make_the_table():
    frame, results = frame_of(record("digits", "cd", "feature", knn=None), record("digits", "simclr", "projector"))
    assert held_out_words([m for m in results.metrics if m["method"] == "cd"]) == ""
    tex = render_comparison_table(frame, TITLES, "results/x", held_out=held_out_words(results.metrics))
    clustering, held_out = tex.split(r"\label{tab:cdrepro-methods-held-out}")

    def rows(part: str) -> dict[str, list[str]]:  # labelled by method name: no variants given
        lines = [line.rstrip("\\ ").split("&") for line in part.splitlines() if "& Ours &" in line]
        return {cells[1].strip(): [c.strip() for c in cells] for cells in lines}

    assert set(rows(clustering)) == {"K-means (raw pixels)", "cd", "simclr"}  # all clustered
    assert set(rows(held_out)) == {"simclr"}  # cd has no held-out number: not in that table
    assert rows(held_out)["simclr"][-3:] == ["0.600", "0.600", "0.700"]  # one ranked row: no bold
    assert BASELINE_VARIANT in set(frame.variant)


def test_the_caption_says_which_runs_trained_on_the_train_split_only():
    everything = [record("cifar10", "cld", "group"), record("cifar10", "simclr", "projector")]
    assert "training and K-means use every image" in held_out_words(everything)
    long_tail = {"split": "official", "long_tail": {"imbalance_ratio": 10, "seed": 0}, "repeats": 1}
    mixed = [everything[0], {**everything[1], "training_set": long_tail}]
    words = held_out_words(mixed)
    assert "training and K-means use every image" not in words
    assert "except in the runs whose training set is the train split" in words
