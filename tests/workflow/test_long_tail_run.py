"""The long_tail target end to end on the CPU (issue 22, item 5): digits' stratified train part,
balanced and long-tailed at ratio 10, through Snakemake, to the long-tail table."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cdrepro.data.heldout import make_split
from cdrepro.data.prepared import load_prepared
from cdrepro.data.splits import long_tail_counts

REPO = Path(__file__).resolve().parents[2]
SPLIT = {"test_fraction": 0.2, "seed": 42}

pytestmark = pytest.mark.slow


def digits(**keys) -> dict:
    return {"source": "digits", "color_strength": 0.5, "blur": False, "crop_min_scale": 0.75, "hflip": False, **keys}


def params() -> dict:
    return {
        "profile": "lt",
        "datasets": {
            "balanced": digits(train_on="train"),
            "tail": digits(train_on="train", long_tail={"imbalance_ratio": 10, "seed": 0}),
        },
        "model": {"backbone": "resnet18", "backbone_width": 4, "stem": "cifar"},
        "train": {"epochs": 1, "image_size": 8, "device": "cpu"},
        "evaluate": {"kmeans_n_init": 1, "split": SPLIT},
        "variants": {"cd": {}},
        "runs": [
            {"dataset": d, "batch_size": 64, "variant": "cd", "seed": 1, "targets": ["long_tail"]}
            for d in ("balanced", "tail")
        ],
    }


def test_long_tail_trains_each_set_on_its_exact_counts_and_tabulates_the_change(tmp_path):
    (tmp_path / "lt.yaml").write_text(yaml.safe_dump(params(), sort_keys=False))
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", CDREPRO_TRACKING="off"
    )
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "long_tail"]
    result = subprocess.run(
        [*command, "--configfile", "lt.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    root = tmp_path / "results" / "lt"
    data = load_prepared(root / "data" / "tail.npz")
    train_part = make_split(data, SPLIT, 200).train
    n = int(np.bincount(data.labels[train_part]).min())  # the smallest class of the train part
    summaries = {
        d: json.loads((root / "runs" / f"{d}-bs64-cd-s1" / "train.json").read_text()) for d in ("balanced", "tail")
    }
    assert summaries["balanced"]["n_images"] == train_part.size == 1438  # the test split held out
    assert summaries["tail"]["class_counts"] == long_tail_counts(n, 10, 10)
    assert summaries["tail"]["n_images"] == sum(long_tail_counts(n, 10, 10))
    metrics = json.loads((root / "runs" / "tail-bs64-cd-s1" / "metrics.json").read_text())
    assert metrics["training_set"]["long_tail"] == {"imbalance_ratio": 10.0, "seed": 0}
    assert metrics["held_out"]["split"]["n_test"] == 359  # the same balanced test split as the balanced run's

    tex = (root / "tables" / "long_tail.tex").read_text()
    assert "(balanced)" in tex and "(ratio 10)" in tex and "no change to show" not in tex
    rows = list(csv.DictReader((root / "tables" / "long_tail.csv").open()))
    changes = [row["change"] for row in rows if row["dataset"] == "tail"]
    assert changes and all(change != "" for change in changes)
