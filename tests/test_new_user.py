"""A new user's first hour, written down as a script (slow: about 2 min on 2 cores).

A fresh clone of the repository; a folder of 32 px images, three classes of 20; the minimal
params file of README.md ("Your own images"), shrunk to seconds (1 epoch, a ResNet of width 4,
a quick LIME); a bare ``snakemake --configfile my.yaml`` in the clone, with the venv's ``bin``
on PATH as an activated venv has it and no ``--cores``; then the MLflow UI of the results, in a
headless Chromium.

The clone is of the repository's commits: uncommitted changes are not in it, as in CI's clean
clone. To try a working tree before committing, commit a copy of it elsewhere and point
``CDREPRO_NEW_USER_SOURCE`` at that copy (``git clone . /tmp/wt``, copy the changed files over,
``git -C /tmp/wt commit -am wip``). The ``cdrepro`` package the jobs run is the venv's, whatever
the clone.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow_server import mlflow_server
from PIL import Image
from system_packages import skip_unless_installed
from test_config import readme_params  # tests/ is on sys.path (pytest's rootdir-relative import)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("CDREPRO_NEW_USER_SOURCE", REPO))
SAMPLE = REPO.parent / "shared" / "data" / "cifar10-sample"  # real photos, when at hand
CLASSES, PER_CLASS = ("airplane", "cat", "ship"), 20
RUN_ID, RUN_NAME = "mine-bs32-cd-s42", "mine/bs32/cd/seed42"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_images(folder: Path) -> None:
    """CIFAR-10 photos from the shared sample if present, else coloured shapes: 32 px either way."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            if SAMPLE.is_dir():
                shutil.copy(SAMPLE / name / f"{i:04d}.jpg", folder / name / f"{i:04d}.jpg")
                continue
            image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            low, high = 4 + k * 4, 20 + k * 4  # each class a square of its own colour and place
            image[low:high, low:high, k] = 200 + rng.integers(0, 55)
            Image.fromarray(image).save(folder / name / f"{i:04d}.png")


def user_env() -> dict[str, str]:
    """An activated venv: its bin first on PATH; tracking on, into the profile's own store."""
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        CDREPRO_TRACKING="on",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Clone, images, params, one bare `snakemake`: (the clone, its output, seconds it took)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path_factory.mktemp("newuser") / "cdrepro"
    subprocess.run(["git", "clone", "--quiet", str(SOURCE), str(clone)], check=True)
    write_images(clone / "data" / "mine")
    params = readme_params(clone / "README.md")
    params["model"]["backbone_width"] = 4
    params["train"]["epochs"] = 1
    params["runs"][0]["batch_size"] = 32
    params["evaluate"] = {"knn": {"k": 20}}  # README: a folder of fewer than 250 images (here 60)
    # A partial figures block: the rest of it comes from the schema's defaults.
    params["figures"] = {"lime": {"num_samples": 50}, "tsne": {"max_iter": 250}}
    (clone / "my.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.monotonic()
    result = subprocess.run(
        ["snakemake", "--configfile", "my.yaml"], cwd=clone, env=user_env(), capture_output=True, text=True, timeout=900
    )
    return clone, result, time.monotonic() - start


def test_a_bare_snakemake_makes_the_tables_and_figures_and_says_little(first_run):
    clone, result, seconds = first_run
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-4000:]
    results = clone / "results" / "mine"
    with open(results / "tables" / "all.csv", newline="") as table:
        ours = [row for row in csv.DictReader(table) if row["source"] == "ours"]
    assert ("mine", "cd") in {(row["dataset"], row["variant"]) for row in ours}, ours
    for made in ("figures/summary.html", "figures/curves_mine.png", f"tsne/{RUN_ID}.png"):
        assert (results / made).is_file(), made
    lines = said.splitlines()
    print(f"bare snakemake: {seconds:.0f} s, {len(lines)} lines:\n{said}")
    assert len(lines) < 60 and "input:" not in said, said
    total = int(re.search(r"^Jobs to run: (\d+)", said, flags=re.M).group(1))
    assert f"[{total}/{total}]" in said
    assert f"start  train {RUN_ID}   log: results/mine/logs/train/{RUN_ID}.log" in said
    assert re.search(rf"^\[\d+/{total}\]\s+done   evaluate {RUN_ID} \(\d+ s\)$", said, flags=re.M), said
    assert "Complete log(s): " in said  # where Snakemake's details went


def test_the_mlflow_ui_lists_the_run(first_run, tmp_path):
    clone, result, _ = first_run
    assert result.returncode == 0, "the workflow failed (see the test above)"
    # Skips without Chromium here; fails in CI, where .ci/run installed it.
    skip_unless_installed(None if CHROMIUM else "no chromium on PATH: the MLflow UI is not checked")
    db = clone / "results" / "mine" / "mlflow.db"
    # The user's `mlflow` (the venv's, on PATH as an activated venv has it), as a user starts it.
    log = tmp_path / "mlflow-server.log"
    with mlflow_server(f"sqlite:///{db}", tmp_path, log=log, mlflow=["mlflow"], env=user_env()) as url:
        name = urllib.parse.quote("cdrepro/mine", safe="")
        api = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"
        with urllib.request.urlopen(api, timeout=30) as got:
            experiment = json.load(got)["experiment"]["experiment_id"]
        page = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{url}/#/experiments/{experiment}/runs",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert RUN_NAME in page.stdout, page.stdout[-3000:] + page.stderr[-2000:]
