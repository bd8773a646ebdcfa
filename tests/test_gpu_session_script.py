"""``bash bench/gpu_session.sh quick`` (issue 20) checked without a GPU: end to end on the CPU at a
tiny size, so that its shell, its files and its tar are known to work before a GPU window opens;
and its plan (bench/quick_session.py) on hand-made rates.

The archive is made here in the real one's layout (``cifar10-train/<class>/<index>.jpg``,
../shared/data/README.md): 6 random 16x16 JPEGs for each of CIFAR-10's classes.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import quick_session  # noqa: E402  (bench/ is not a package)
from gpu_session import run_gpu_session  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_CLASS = 6
VARIANTS = ("cd", "no_ne", "simclr", "cc", "cld", "cdc")
RUNS = [f"cifar10-bs16-{v}-s42" for v in VARIANTS]
TINY = (
    "--images-per-class 6 --batch-size 16 --set model.backbone_width=4 --set train.image_size=16 "
    "--set evaluate.kmeans_n_init=2 --set evaluate.knn.k=10 "  # a kNN bank of 48 images
    "--packs 1,2 --probe-seconds 0.2 --probe-warmup 1 --startup-s 2 "
    "--eval-s 2 --report-s 40 --threads 1 --max-epochs 2"
)


def tiny_archive(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in CLASSES:
            for index in range(PER_CLASS):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="JPEG")
                info = tarfile.TarInfo(f"cifar10-train/{name}/{index}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
    return path


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict:
    """One run of the script; its exit status, output, and the files of its tarball."""
    tmp = tmp_path_factory.mktemp("gpu_session")
    proc, tarball, files = run_gpu_session(
        "quick",
        tmp,
        WORK=str(tmp / "work"),
        DATA_DIR=str(tmp / "data"),
        ARCHIVE=str(tiny_archive(tmp / "tiny.tar.gz")),
        BUDGET_S="240",
        QUICK_ARGS=TINY,
    )
    return {"proc": proc, "tmp": tmp, "tarball": tarball, "files": files}


@pytest.mark.slow
def test_the_script_runs_end_to_end_on_the_cpu_and_packs_every_file(session):
    proc = session["proc"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert session["tarball"].is_file()
    assert sorted(p.name for p in session["tarball"].parent.iterdir()) == ["session-quick.tar.gz"]
    files = session["files"]
    for name in (
        "rates.json",
        "plan.json",
        "summary.json",
        "summary.md",
        "quick-gpu.yaml",
        "session.log",
        "tables/methods.csv",
        "tables/methods.tex",
        "curves_cifar10.png",
        "curves_cifar10.csv",
        "baselines/cifar10.json",
    ):
        assert (files / name).is_file(), name
    for rid in RUNS:
        for name in ("metrics.json", "curves.csv", "train.json"):
            assert (files / "runs" / rid / name).is_file(), (rid, name)
    assert not [p for p in files.rglob("*") if p.suffix in (".pt", ".npz")]


@pytest.mark.slow
def test_the_session_measured_planned_and_trained_what_it_says(session):
    files = session["files"]
    rates = json.loads((files / "rates.json").read_text())
    assert set(rates["total_pairs_per_s"]) == {"1", "2"} and all(v > 0 for v in rates["total_pairs_per_s"].values())
    assert rates["packs"]["2"][RUNS[0]]["processes"] == 2
    assert {"ceilings", "augment_only", *RUNS} <= set(rates["anatomy"])
    plan = json.loads((files / "plan.json").read_text())
    assert plan["epochs"] == 2 and plan["packing"] in (1, 2) and not plan["fallback_rate_used"]
    assert sorted(r for slot in plan["slots"] for r in slot) == sorted(RUNS)
    summary = json.loads((files / "summary.json").read_text())
    assert summary["verdict"] and summary["packing"][0]["packing"] == 1
    for rid in RUNS:
        run = summary["runs"][rid]
        assert run["epochs"] == 2 and run["train"]["status"] == 0 and run["evaluate"]["status"] == 0, rid
        assert 0.0 <= run["final_nmi"] <= 1.0, rid
    methods = (files / "tables" / "methods.csv").read_text()
    assert all(v in methods for v in ("simclr", "cc", "cld", "cdc")), methods


@pytest.mark.slow
def test_the_trained_params_are_quick_yaml_but_for_data_device_and_epochs(session):
    """No training setting is copied by hand: the derived params differ from quick.yaml only where
    bench/quick_params.py says (and where the test shrinks them)."""
    quick = yaml.safe_load((REPO / "workflow/configs/quick.yaml").read_text())
    used = yaml.safe_load((session["files"] / "quick-gpu.yaml").read_text())
    changed = {"device", "epochs", "image_size"}  # image_size: the test's --set
    assert {k: v for k, v in used["train"].items() if k not in changed} == {
        k: v for k, v in quick["train"].items() if k not in changed
    }
    assert used["train"]["epochs"] == json.loads((session["files"] / "plan.json").read_text())["epochs"]
    assert used["datasets"]["cifar10"] == {
        **quick["datasets"]["cifar10"],
        "source": "folder",
        "path": str(session["tmp"] / "data" / "cifar10-train"),
        "images_per_class": PER_CLASS,
    }
    assert used["variants"] == quick["variants"] and used["methods"] == quick["methods"]
    knn = {**quick["evaluate"].get("knn", {}), "k": 10}  # the test's --set: a bank of 48 images
    assert used["evaluate"] == {**quick["evaluate"], "kmeans_n_init": 2, "knn": knn}


# --------------------------------------------------------------------------- the plan, by hand


def plan_args(**changes) -> argparse.Namespace:
    args = quick_session.parse_args(["--out", "unused"])
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_runs_are_spread_dearest_first_over_the_least_loaded_slot():
    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0, "f": 1.0}
    assert quick_session.spread(costs, 3) == [["a", "f"], ["b", "e"], ["c", "d"]]
    assert quick_session.spread(costs, 1) == [["a", "b", "c", "d", "e", "f"]]


def test_the_epochs_fit_the_slowest_slot_with_start_up_evaluation_and_margin():
    args = plan_args(startup_s=10.0, eval_s=20.0, margin=0.5, min_epochs=1, max_epochs=100)
    epoch_s = {"a": 2.0, "b": 1.0, "c": 1.0}
    one = quick_session.plan_for(1, epoch_s, available=240.0, a=args)
    # One slot of 3 runs: 0.5 * (240 - 3 * 10 - 20) / (2 + 1 + 1) = 23.75 -> 23 epochs.
    assert one["epochs"] == 23 and one["slots"] == [["a", "b", "c"]]
    assert one["predicted_s"] == pytest.approx(3 * 10 + 23 * 4 + 20)
    two = quick_session.plan_for(2, epoch_s, available=240.0, a=args)
    # Slots [a] and [b, c]: min(0.5 * 210 / 2, 0.5 * 200 / 2) = 50.
    assert two["epochs"] == 50
    assert quick_session.plan_for(1, epoch_s, available=10.0, a=args)["epochs"] == 1  # at least min_epochs
    assert quick_session.plan_for(2, epoch_s, available=1e6, a=args)["epochs"] == 100  # at most max_epochs


def test_a_packing_factor_not_every_process_reached_is_left_out_of_the_totals(tmp_path):
    one = {
        "1": {"r": {"pairs_per_s": 100.0, "ms_per_step": 10.0}},
        "2": {"r": {"pairs_per_s": 80.0, "ms_per_step": 12.0}},
    }
    (tmp_path / "rank0.json").write_text(json.dumps({"packs": one, "anatomy": {"ceilings": {}}}))
    (tmp_path / "rank1.json").write_text("{not json")  # stopped before it wrote anything
    merged = quick_session.merge_probe([tmp_path / "rank0.json", tmp_path / "rank1.json"], [0, None])
    assert merged["total_pairs_per_s"] == {"1": 100.0}
    assert merged["packs"]["2"]["r"]["processes"] == 1


def test_a_run_past_the_deadline_is_stopped_and_one_that_cannot_end_is_not_started(tmp_path, monkeypatch):
    args = plan_args(budget=100.0, report_s=0.0, startup_s=0.0, threads=None)
    monkeypatch.setattr(quick_session, "CLOCK", quick_session.Clock(time.time() - 99.0, 100.0))  # 1 s left
    monkeypatch.setattr(quick_session, "cdrepro", lambda *argv: ["sleep", "30"])  # a training that overruns
    session = quick_session.Session(args, tmp_path, tmp_path, tmp_path / "params.yaml", {}, ["a", "b"])
    outcomes: dict = {}
    evaluations: list = []
    quick_session.train_slot(session, ["a", "b"], {"a": 0.5, "b": 100.0}, 1, outcomes, evaluations)
    assert outcomes["a"]["train"]["status"] is None and outcomes["a"]["train"]["wall_s"] < 10
    assert "skipped" in outcomes["b"]["train"]  # 90 s needed, 1 s left
    assert evaluations == []  # nothing stopped is evaluated


def test_a_probe_barrier_passes_when_all_arrive_and_gives_up_on_a_failed_peer_or_timeout(tmp_path):
    import packing_probe

    (tmp_path / "go.1").touch()
    packing_probe.barrier(tmp_path, "go", 0, 2, timeout=5)  # rank 1 is there already
    with pytest.raises(TimeoutError):
        packing_probe.barrier(tmp_path, "next", 0, 2, timeout=0.05)
    (tmp_path / "failed.1").touch()
    with pytest.raises(RuntimeError, match="peer failed"):
        packing_probe.barrier(tmp_path, "last", 0, 2, timeout=5)


# --------------------------------------------------------------------------- the summary, by hand


def gpu_like_rates(busy_ms: float, packed_total: float) -> dict:
    """One run timed alone (25.6 ms a step of 256 pairs) and 3 at once (``packed_total``)."""
    alone = {
        "processes": 1,
        "per_process_pairs_per_s": [10000.0],
        "total_pairs_per_s": 10000.0,
        "ms_per_step": [25.6],
        "peak_allocated_gib_per_process": 3.0,
        "device_used_gib": 4.0,
    }
    packed = {
        "processes": 3,
        "per_process_pairs_per_s": [packed_total / 3] * 3,
        "total_pairs_per_s": packed_total,
        "ms_per_step": [30.0] * 3,
        "peak_allocated_gib_per_process": 3.0,
        "device_used_gib": 12.0,
    }
    return {
        "total_pairs_per_s": {"1": 10000.0, "3": packed_total},
        "packs": {"1": {"r": alone}, "3": {"r": packed}},
        "ranks": [{"device_name": "NVIDIA H200", "torch": "2.11"}],
        "anatomy": {
            "ceilings": {"bf16_matmul_tflops": 780.0},
            "augment_only": {"ms_per_step": 2.0},
            "r": {
                "model_only": {"ms_per_step": 20.0},
                "flops_per_pair": 3.3e9,
                "profile": {"gpu_ms_per_step": busy_ms, "kernels_per_step": 900.0},
            },
        },
    }


def test_the_summary_says_launch_bound_when_the_gpu_idles_and_packing_helps(tmp_path):
    import quick_summary

    summary = quick_summary.write(
        tmp_path,
        gpu_like_rates(busy_ms=10.24, packed_total=24000.0),
        {"epoch_s": {"r": 5.0}, "packing": 3, "epochs": 30},
        {},
        {},
        time_s=500.0,
    )
    row = summary["anatomy"]["r"]
    assert row["busy"] == pytest.approx(0.4) and row["tflops"] == pytest.approx(33.0)
    assert row["of_matmul_ceiling"] == pytest.approx(33.0 / 780.0, abs=1e-3)
    assert summary["packing"][1]["gain_over_one"] == pytest.approx(2.4)
    text = " ".join(summary["verdict"])
    assert "2.40x" in text and text.count("launch/host-bound") == 2 and "Compute" not in text
    assert "22% of a step" in text  # 1 - 20 / 25.6
    assert "NVIDIA H200" in (tmp_path / "summary.md").read_text()


def test_the_summary_says_memory_bound_when_a_busy_gpu_is_far_below_its_matmul_rate(tmp_path):
    import quick_summary

    summary = quick_summary.write(
        tmp_path, gpu_like_rates(busy_ms=24.3, packed_total=10500.0), {"epoch_s": {"r": 5.0}}, {}, {}, time_s=500.0
    )
    text = " ".join(summary["verdict"])
    assert "near saturation" in text and "the GPU is the limit" in text and "memory bandwidth" in text
