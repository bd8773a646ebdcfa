"""A box with 4 GPUs, simulated on the CPU, runs 8 tiny trainings two to a GPU (issue 23).

``gpus.count: 4`` makes the jobs take GPU slots as on such a machine (cdrepro.gpu_slots), and
the Snakefile registers 4 x 2 slots with Snakemake; the local profile is all that is passed.
While the workflow runs, the job that holds slot 0.0 is killed with SIGKILL. Then, from the
slots' record (every take and release, with its time) and the jobs' logs: no two jobs held the
same slot at the same time, no job had to wait for one (Snakemake started no more than there
are), every job's log names its slot, and the killed job's slot was taken again by the next
job, its run's rerun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_snakemake import REPO, SNAKEMAKE

from cdrepro.gpu_slots import RECORD
from cdrepro.runs import ProfilePaths, Run, run_id

RUNS = [Run("dots", 64, "cd", seed) for seed in range(1, 9)]


def dots(folder: Path) -> Path:
    """A folder dataset of 10 classes x 16 random 8 px images: two steps an epoch at batch 64,
    where the embedded digits take 14 at 128 (this test times jobs, not learning)."""
    rng = np.random.default_rng(0)
    for label in range(10):
        (folder / "dots" / f"class{label}").mkdir(parents=True)
        for i in range(16):
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "dots" / f"class{label}" / f"{i}.png")
    return folder / "dots"


def simulated_box(folder: Path) -> Path:
    """8 tiny runs (4 channels wide, 8 px, one epoch) on a machine of 4 GPUs, 2 runs a GPU."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "slots"
    params["datasets"]["dots"] = {"source": "folder", "path": str(dots(folder)), "store_size": 8}
    params["datasets"]["dots"] |= {"color_strength": 0.5, "blur": False}
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=1, image_size=8, device="cpu")
    params["gpus"] = {"count": 4, "runs_per_gpu": 2, "slot_dir": str(folder / "slots")}
    params["runs"] = [vars(run).copy() for run in RUNS]
    path = folder / "box.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def start_workflow(folder: Path, params_file: Path) -> subprocess.Popen:
    models = [str(ProfilePaths(Path("results") / "slots").model(run_id(run))) for run in RUNS]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for scheduler_variable in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID"):
        env.pop(scheduler_variable, None)
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--workflow-profile", str(REPO / "workflow/profiles/local")]
    # Eight cores on any machine, so that the slots, not the cores, bound what runs at once.
    command += ["--cores", "8", *models, "--configfile", str(params_file)]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def record(folder: Path) -> list[dict]:
    path = folder / "slots" / RECORD
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def kill_the_holder_of(slot: str, folder: Path, workflow: subprocess.Popen) -> dict:
    """SIGKILL the job that takes ``slot`` first; its record line, with the time of the kill."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and workflow.poll() is None:
        took = [line for line in record(folder) if line["event"] == "took" and line["slots"] == slot]
        if took:
            os.kill(took[0]["pid"], signal.SIGKILL)
            return took[0] | {"killed": time.time()}
        time.sleep(0.05)
    raise AssertionError(f"no job took slot {slot}")


def holdings(lines: list[dict], killed: dict) -> dict[str, list[tuple[float, float, str]]]:
    """slot -> (from, to, job) of every time a job held it; the killed job's ends at its kill."""
    started: dict[tuple[int, str], dict] = {}
    held: dict[str, list[tuple[float, float, str]]] = {}
    for line in lines:
        key = (line["pid"], line["slots"])
        if line["event"] == "took":
            started[key] = line
        else:
            held.setdefault(line["slots"], []).append((started.pop(key)["time"], line["time"], line["job"]))
    assert list(started) == [(killed["pid"], killed["slots"])], "a take without a release"
    held[killed["slots"]].append((killed["time"], killed["killed"], killed["job"]))
    return {slot: sorted(times) for slot, times in held.items()}


@pytest.mark.slow
def test_a_four_gpu_box_runs_eight_trainings_two_a_gpu_in_slots_of_their_own(tmp_path):
    params_file = simulated_box(tmp_path)
    workflow = start_workflow(tmp_path, params_file)
    killed = kill_the_holder_of("0.0", tmp_path, workflow)
    output, _ = workflow.communicate(timeout=600)
    assert workflow.returncode != 0, "the killed job's failure was not reported"
    paths = ProfilePaths(tmp_path / "results" / "slots")
    trained = [run_id(run) for run in RUNS if paths.model(run_id(run)).is_file()]
    assert len(trained) == 7 and killed["job"] not in trained, output[-3000:]

    # The next job is the killed run's rerun: it finds the killed job's slot free.
    rerun = start_workflow(tmp_path, params_file)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    lines = record(tmp_path)
    taken_by_killed_run = [line["slots"] for line in lines if line["event"] == "took" and line["job"] == killed["job"]]
    assert taken_by_killed_run == ["0.0", "0.0"]

    held = holdings(lines, killed)
    for slot, times in held.items():
        for (_, ended, before), (began, _, after) in zip(times, times[1:], strict=False):
            assert ended <= began, f"{before} and {after} held slot {slot} at the same time"
    assert set(held) <= {f"{gpu}.{k}" for gpu in range(4) for k in range(2)}
    assert max(at_once(held, moment) for moment in [t[0] for times in held.values() for t in times]) > 1

    for run in RUNS:
        rid = run_id(run)
        log = (paths.logs_dir() / "train" / f"{rid}.log").read_text()
        last = [line["slots"] for line in lines if line["event"] == "took" and line["job"] == rid][-1]
        assert f"{rid}: GPU slot {last} (GPU {last.split('.')[0]}; CUDA_VISIBLE_DEVICES=" in log, log
        assert "waiting for" not in log, "Snakemake started more GPU jobs than there are slots"


def at_once(held: dict[str, list[tuple[float, float, str]]], moment: float) -> int:
    return sum(began <= moment < ended for times in held.values() for began, ended, _ in times)
