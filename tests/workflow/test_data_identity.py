"""Every number comes from the model it claims (issue 19), through the real workflow.

A run's identity covers its data (``cdrepro.identity``): a dataset prepared anew with other
images (``images_per_class`` raised, a file added to the folder) trains every run on it again
from epoch 0, under the same run id; params switched back resume the finished work set aside.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RID = "mine-bs4-cd-s1"

pytestmark = pytest.mark.slow


def snakemake(tmp_path: Path, params: dict, target: str) -> subprocess.CompletedProcess:
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", CDREPRO_TRACKING="off"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--cores",
            "1",
            target,
            "--configfile",
            "my.yaml",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def add_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def params(tmp_path: Path) -> dict:
    for c, name in enumerate(("cat", "dog")):
        for i in range(6):
            add_image(tmp_path / "data" / name / f"{i + 1}.png", seed=10 * c + i)
    return {
        "profile": "mine",
        "datasets": {
            "mine": {"source": "folder", "path": "data", "images_per_class": 4, "color_strength": 0.5, "blur": False}
        },
        "model": {"backbone": "resnet18", "backbone_width": 4},
        "train": {"epochs": 2, "image_size": 8, "device": "cpu"},
        "variants": {"cd": {}},
        "runs": [{"dataset": "mine", "batch_size": 4, "variant": "cd", "seed": 1}],
    }


def trained(tmp_path: Path, params: dict) -> tuple[str, str]:
    """Run the workflow up to the run's model: its SHA-256 and the training log."""
    run_dir = tmp_path / "results" / "mine" / "runs" / RID
    snakemake(tmp_path, params, str(Path("results", "mine", "runs", RID, "model.pt")))
    log = (tmp_path / "results" / "mine" / "logs" / "train" / f"{RID}.log").read_text()
    return hashlib.sha256((run_dir / "model.pt").read_bytes()).hexdigest(), log


def test_a_changed_dataset_retrains_and_params_switched_back_resume(tmp_path, params):
    first, log = trained(tmp_path, params)
    assert "epoch 2/2" in log

    params["datasets"]["mine"]["images_per_class"] = 5  # more images: a new dataset
    second, log = trained(tmp_path, params)
    assert second != first
    assert "other data" in log and "epoch 1/2" in log and "resuming" not in log, log

    add_image(tmp_path / "data" / "cat" / "0.png", seed=99)  # sorts first: among the 5 taken
    third, log = trained(tmp_path, params)
    assert third not in (first, second)
    assert "other data" in log and "epoch 1/2" in log, log

    (tmp_path / "data" / "cat" / "0.png").unlink()  # the second dataset again: its work is kept
    again, log = trained(tmp_path, params)
    assert again == second
    assert "taking back the checkpoint set aside" in log and "epoch 1/2" not in log, log
