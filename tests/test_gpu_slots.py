"""GPU slots (issue 23, item 1): the jobs of one machine pick their own GPUs.

A machine with GPUs is simulated on the CPU: the slot logic takes the GPU count as an input
(``gpus.count``), and what a job does with its slots is set CUDA_VISIBLE_DEVICES, which the
CPU ignores. tests/workflow/test_gpu_slots_workflow.py runs a workflow on a simulated box.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cdrepro import config as cfg
from cdrepro import gpu_slots
from cdrepro.gpu_slots import Slot, candidate_gpus, placed, take


def box(tmp_path, count=4, runs_per_gpu=2) -> dict:
    """What placed() reads of a params file: a simulated machine of ``count`` GPUs."""
    return {
        "train": {"device": "cpu"},
        "gpus": {"count": count, "runs_per_gpu": runs_per_gpu, "slot_dir": str(tmp_path / "slots")},
    }


def gpus_of(placement) -> list[str]:
    return [slot.gpu for slot in placement.slots]


def test_jobs_take_distinct_slots_spread_over_the_least_loaded_gpus(tmp_path):
    folder, gpus = tmp_path / "slots", ["0", "1", "2", "3"]
    held = [take(folder, gpus, 2, 1, f"job{i}") for i in range(8)]
    names = [p.names for p in held]
    assert len(set(names)) == 8
    # One a GPU first, then the second slot of each: the least loaded GPU is chosen.
    assert names == ["0.0", "1.0", "2.0", "3.0", "0.1", "1.1", "2.1", "3.1"]
    for placement in held[:3]:
        gpu_slots.release(placement, folder, "job")
    # Two slots freed on GPUs 0 and 1 and one on 2: the next job goes where fewest run.
    assert take(folder, gpus, 2, 1, "next").names in {"0.0", "1.0", "2.0"}
    assert take(folder, gpus, 2, 1, "next").names != take(folder, gpus, 2, 1, "next").names


def test_a_job_waits_for_a_free_slot_and_says_so(tmp_path, caplog):
    folder = tmp_path / "slots"
    first = take(folder, ["0"], 1, 1, "first")
    got = []
    waiter = threading.Thread(target=lambda: got.append(take(folder, ["0"], 1, 1, "second", poll_seconds=0.05)))
    with caplog.at_level("INFO", logger="cdrepro"):
        waiter.start()
        time.sleep(0.5)
        assert not got, "took a slot that another job holds"
        gpu_slots.release(first, folder, "first")
        waiter.join(timeout=10)
    assert got and got[0].names == "0.0"
    waiting = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waiting) == 1 and "0.0 by first (pid" in waiting[0], waiting


def test_two_gpus_a_run_take_two_slots_on_distinct_gpus(tmp_path):
    folder, gpus = tmp_path / "slots", ["0", "1", "2"]
    a = take(folder, gpus, 2, 2, "a")
    b = take(folder, gpus, 2, 2, "b")
    assert len(set(gpus_of(a))) == 2 and len(set(gpus_of(b))) == 2
    assert not set(a.names.split(",")) & set(b.names.split(","))
    # GPU 2, left with the most free slots, is in b's; a third two-GPU job still fits.
    assert "2" in gpus_of(b)
    c = take(folder, gpus, 2, 2, "c")
    assert len(set(gpus_of(c))) == 2
    # A run that wants more GPUs than the job may use is told so rather than waiting forever.
    with pytest.raises(ValueError, match=r"needs 4 GPUs \(train.gpus_per_run\) but this job may use 3"):
        take(folder, gpus, 2, 4, "d")


def test_placed_sets_cuda_visible_devices_for_the_block_only(tmp_path, caplog):
    environ: dict[str, str] = {}
    with caplog.at_level("INFO", logger="cdrepro"), placed(box(tmp_path), 2, "run-x", environ) as placement:
        assert placement is not None and len(set(gpus_of(placement))) == 2
        assert environ["CUDA_VISIBLE_DEVICES"] == placement.gpus == "0,1"
        assert environ[gpu_slots.SLOTS_ENV] == placement.names == "0.0,1.0"
    assert environ == {}, "the environment is put back"
    assert [r.getMessage() for r in caplog.records if "run-x: GPU slots" in r.getMessage()] == [
        "run-x: GPU slots 0.0,1.0 (GPUs 0,1; CUDA_VISIBLE_DEVICES=0,1)"
    ]
    # Released: the next job takes the same slots.
    with placed(box(tmp_path), 2, "run-y", environ) as again:
        assert again is not None and again.names == "0.0,1.0"


def test_a_schedulers_cuda_visible_devices_is_kept(tmp_path):
    """SLURM (or the user) set CUDA_VISIBLE_DEVICES: the job chooses among those GPUs only,
    two slots of a run on GPUs 5 and 7; and a SLURM job's slots are its own."""
    environ = {"CUDA_VISIBLE_DEVICES": "5,7", "SLURM_JOB_ID": "123"}
    with placed(box(tmp_path), 2, "run", environ) as placement:
        assert placement is not None and placement.names == "5.0,7.0"
        assert environ["CUDA_VISIBLE_DEVICES"] == "5,7"
        assert (tmp_path / "slots" / "slurm-job-123" / Slot("5", 0).file(tmp_path).name).is_file()
    assert environ == {"CUDA_VISIBLE_DEVICES": "5,7", "SLURM_JOB_ID": "123"}
    assert candidate_gpus(4, {"CUDA_VISIBLE_DEVICES": "GPU-a1,GPU-b2"}) == ["GPU-a1", "GPU-b2"]
    assert candidate_gpus(1, {"CUDA_VISIBLE_DEVICES": "3,4"}) == ["3"]
    assert candidate_gpus(2, {}) == ["0", "1"]


def test_no_slots_on_the_cpu_and_none_taken_again_under_torchrun(tmp_path):
    cpu = box(tmp_path) | {"gpus": {"count": "auto", "runs_per_gpu": 1, "slot_dir": str(tmp_path)}}
    assert gpu_slots.gpu_count(cpu) == 0 and gpu_slots.machine_slots(box(tmp_path)) == 8
    with placed(cpu, 1, "run", {}) as placement:
        assert placement is None
    # torchrun's processes: their launcher holds the slots and names them; by hand, none.
    with placed(box(tmp_path), 2, "run", {"WORLD_SIZE": "2", gpu_slots.SLOTS_ENV: "0.1,3.0"}) as placement:
        assert placement is not None and placement.names == "0.1,3.0" and placement.fds == []
    with placed(box(tmp_path), 2, "run", {"WORLD_SIZE": "2"}) as placement:
        assert placement is None
    assert not (tmp_path / "slots").exists(), "nothing taken"


HOLDER = """
import sys, time
from pathlib import Path
from cdrepro.gpu_slots import take
take(Path(sys.argv[1]), ["0"], 1, 1, "holder")
print("held", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_holder_frees_its_slot(tmp_path):
    folder = tmp_path / "slots"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert gpu_slots._choose_alone(folder, ["0"], 1, 1) == [], "the holder's slot looked free"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    placement = take(folder, ["0"], 1, 1, "next", poll_seconds=0.05)
    assert placement.names == "0.0"


@pytest.mark.parametrize(
    ("gpus", "hint"),
    [
        ({"count": "many"}, 'gpus.count is "auto"'),
        ({"count": -1}, 'gpus.count is "auto"'),
        ({"runs_per_gpu": 0}, "gpus.runs_per_gpu is a whole number from 1 up"),
    ],
)
def test_a_bad_gpus_setting_names_the_key_and_what_to_write(embedded_params, gpus, hint):
    embedded_params["gpus"] = gpus
    with pytest.raises(cfg.ParamsError) as error:
        cfg.validate_params(embedded_params)
    assert str(next(iter(gpus.values()))) in str(error.value) and hint in str(error.value), str(error.value)


def test_a_job_whose_cuda_sees_other_gpus_than_its_slots_stops(monkeypatch):
    """CUDA started before CUDA_VISIBLE_DEVICES named the job's GPU (no NVML to count them
    without it): the job would see every GPU and run on the first, which another job holds."""
    import torch

    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    held = {gpu_slots.SLOTS_ENV: "2.1", "CUDA_VISIBLE_DEVICES": "2"}
    with pytest.raises(RuntimeError, match=r"holds GPU slot\(s\) 2.1 but CUDA shows it 4 GPUs .* Set gpus.count"):
        gpu_slots.check_cuda_sees_its_gpus(held)
    gpu_slots.check_cuda_sees_its_gpus({})  # no slots held: nothing to check
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    gpu_slots.check_cuda_sees_its_gpus(held)
