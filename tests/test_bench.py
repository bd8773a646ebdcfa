"""bench/train_throughput.py at its CPU smoke size: it runs and its JSON is consistent.

No timing asserts: the numbers depend on the machine and its load."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"
SMOKE = [
    "--device",
    "cpu",
    "--backbone",
    "resnet18",
    "--width",
    "8",
    "--image-size",
    "32",
    "--batch-size",
    "32",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--kmeans-n",
    "2000",
    "--workers",
    "0",
    "--n-images",
    "256",
    "--threads",
    "1",
]


@pytest.mark.slow
def test_smoke_run_writes_consistent_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *SMOKE, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pairs/s" in proc.stdout
    report = json.loads(out.read_text())

    assert report["device"] == "cpu"
    assert report["torch"] and report["device_name"]
    assert report["settings"]["batch_size"] == 32
    assert report["settings"]["run"]["backbone"] == "resnet18"

    results = report["results"]
    assert set(results) == {"reference", "ours", "model_only", "augment_only"}
    assert report["settings"]["compile"] == "none"  # compiling is for CUDA only
    for name, result in results.items():
        rate = result["pairs_per_s"]
        assert math.isfinite(rate) and rate > 0, name
        assert result["steps"] == 3 and result["pairs"] == 3 * 32
        assert result["pairs_per_s"] == pytest.approx(result["pairs"] / result["seconds"])
        assert math.isfinite(result["last_loss"]), name
        assert result["ratio_to_reference"] == pytest.approx(rate / results["reference"]["pairs_per_s"])
        assert result["ratio_to_model_only"] == pytest.approx(rate / results["model_only"]["pairs_per_s"])
    assert results["reference"]["ratio_to_reference"] == pytest.approx(1.0)
    assert results["model_only"]["ratio_to_model_only"] == pytest.approx(1.0)

    kmeans = report["kmeans"]
    assert (kmeans["n"], kmeans["d"], kmeans["n_init"]) == (2000, 512, 10)
    for backend in ("sklearn", "torch"):
        assert math.isfinite(kmeans[backend]["seconds"]) and kmeans[backend]["seconds"] > 0
        assert 0.0 <= kmeans[backend]["nmi_to_truth"] <= 1.0
    assert kmeans["torch"]["device"] == "cpu"
    assert kmeans["inertia_ratio"] == pytest.approx(kmeans["torch"]["inertia"] / kmeans["sklearn"]["inertia"])


@pytest.mark.slow
def test_paths_subset_and_unknown_path(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *SMOKE, "--paths", "ours,augment_only", "--no-kmeans", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"ours", "augment_only"}
    assert report["kmeans"] == {}
    assert report["results"]["ours"]["ratio_to_reference"] is None  # no (a) to compare with
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), *SMOKE, "--paths", "ours,nope"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr
