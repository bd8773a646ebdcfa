"""Nothing lost (issue 5, items 1 and 2), at the workflow level: Snakemake killed with SIGKILL
mid-training, then interrupted with Ctrl-C (SIGINT to its process group), and re-run each time
(``--rerun-incomplete``: Snakemake refuses the interrupted job's outputs until told to re-run it),
ends with the same tables as a run never interrupted; finished runs are never retrained and the
interrupted ones resume from their checkpoints.

One tiny profile (two digits runs, a few epochs each), run once straight and once with the
interruptions. The prepared data and baselines of the straight run are copied over, so only
training, evaluation and the tables run twice.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cdrepro.runs import ProfilePaths

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
RUNS = ["digits-bs128-cd-s42", "digits-bs128-no_sched-s42"]
EPOCHS = 3


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)


def start_snakemake(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """Snakemake in its own process group (its own session), as a terminal would run it."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [*SNAKEMAKE, *args], cwd=cwd, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def params_file(folder: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["model"]["backbone_width"] = 8
    params["train"].update(epochs=EPOCHS, image_size=16)
    params["evaluate"]["kmeans_n_init"] = 2
    params["runs"] = [r for r in params["runs"] if f"digits-bs{r['batch_size']}-{r['variant']}-s{r['seed']}" in RUNS]
    assert len(params["runs"]) == len(RUNS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def epochs_done(curves: Path) -> int:
    try:
        with open(curves, newline="") as handle:
            return len(list(csv.DictReader(handle)))
    except FileNotFoundError:
        return 0


def wait_for(condition, proc: subprocess.Popen, what: str, log: Path, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Send ``sig`` to Snakemake's whole process group (Ctrl-C does the same) and wait."""
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    if sig == signal.SIGKILL:
        return
    with contextlib.suppress(ProcessLookupError):  # what Snakemake left running is not ours to wait for
        os.killpg(proc.pid, signal.SIGKILL)


def tables_of(paths: ProfilePaths) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(paths.tables_dir().iterdir())}


@pytest.mark.slow
def test_killed_then_interrupted_workflow_resumes_to_the_same_tables(tmp_path):
    target = ["--cores", "1", "reproduce_tables", "--configfile", "tiny.yaml"]

    straight_dir = tmp_path / "straight"
    params_file(straight_dir)
    result = snakemake(*target[2:], "--cores", "2", cwd=straight_dir)
    assert result.returncode == 0, result.stderr[-4000:]
    straight = ProfilePaths(straight_dir / "results" / "tiny")

    work = tmp_path / "interrupted"
    params_file(work)
    paths = ProfilePaths(work / "results" / "tiny")
    for folder in ("data", "baselines"):  # not under test here; copied with their times
        shutil.copytree(straight.root / folder, paths.root / folder)

    def training(min_epochs: int, *, finished: set[str] = frozenset()):
        """The run (not in ``finished``) that has checkpointed ``min_epochs`` epochs, if any."""
        for rid in RUNS:
            if (
                rid not in finished
                and not paths.model(rid).exists()
                and min_epochs <= epochs_done(paths.curves(rid)) < EPOCHS
            ):
                return rid
        return None

    # 1. SIGKILL (a pre-empted job): Snakemake and its job die at once, mid-training.
    log1 = tmp_path / "snakemake-1.log"
    proc = start_snakemake(*target, cwd=work, log=log1)
    first = wait_for(lambda: training(1), proc, "a run's first checkpoint", log1)
    stop(proc, signal.SIGKILL)
    killed_at = torch.load(paths.checkpoint(first), weights_only=True)["epoch"]
    assert 1 <= killed_at < EPOCHS and not paths.model(first).exists()

    # A killed Snakemake leaves its lock: --unlock, then the same command again. Ctrl-C the
    # re-run once the first run is finished and the second has a checkpoint.
    unlock = snakemake("--unlock", "--configfile", "tiny.yaml", cwd=work)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    # The killed job's outputs are known to be incomplete: never taken for finished ones.
    plan = snakemake("-n", *target, cwd=work)
    said = plan.stdout + plan.stderr
    assert plan.returncode != 0 and "IncompleteFilesException" in said, said[-3000:]
    assert str(paths.curves(first).relative_to(work)) in said, said[-3000:]
    log2 = tmp_path / "snakemake-2.log"
    proc = start_snakemake(*target, "--rerun-incomplete", cwd=work, log=log2)
    second = wait_for(
        lambda: paths.model(first).exists() and training(1, finished={first}),
        proc,
        "the first run to finish and the second to checkpoint",
        log2,
    )
    stop(proc, signal.SIGINT)
    first_log = (paths.logs_dir() / "train" / f"{first}.log").read_text()
    assert f"at epoch {killed_at}" in first_log and "resuming" in first_log, first_log
    finished_model = paths.model(first).stat().st_mtime_ns
    assert not paths.model(second).exists()

    # 2. After Ctrl-C too, the interrupted job's outputs stay marked incomplete: a plain re-run
    # refuses them, --rerun-incomplete re-runs the job, whose training resumes. The finished run
    # is not retrained; the tables are those of the straight run.
    plain = snakemake(*target, cwd=work)
    said = plain.stdout + plain.stderr
    assert plain.returncode != 0 and "IncompleteFilesException" in said, said[-3000:]
    assert str(paths.curves(second).relative_to(work)) in said, said[-3000:]
    log3 = tmp_path / "snakemake-3.log"
    final = snakemake(*target, "--rerun-incomplete", cwd=work)
    log3.write_text(final.stdout + final.stderr)
    assert final.returncode == 0, final.stderr[-4000:]
    assert paths.model(first).stat().st_mtime_ns == finished_model, "a finished run was retrained"
    second_log = (paths.logs_dir() / "train" / f"{second}.log").read_text()
    assert "resuming" in second_log, second_log
    for rid in RUNS:
        assert epochs_done(paths.curves(rid)) == EPOCHS
    assert tables_of(paths) == tables_of(straight)
