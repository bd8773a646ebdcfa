"""A two-process training (``train.gpus_per_run: 2``) killed or failing (issue 19): its
processes die with the torchrun that ``cdrepro train`` becomes (``launcher.die_with_parent``),
the rerun resumes, and a failure reads as one ``cdrepro train: error:`` line, not torch's logs
and traceback (``launcher.launch``).

The end-to-end runs are tiny (random 16x16 images, a width-4 ResNet-18, batch 16 on two gloo
processes on the CPU); each start of torchrun and its two processes takes 15-25 s on two busy
cores, so those tests are slow. The others fork or call the pieces directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_reliability import files_of, load, wait_for, write_profile

from cdrepro import cli, gpu_slots, launcher
from cdrepro.runlock import run_lock
from cdrepro.runs import ProfilePaths

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

# Of 4 steps (64 images), 0.5-1 s each: killed after the first, orphans would go on for
# seconds (and before the fix did).
EPOCHS = 8


def two_process_run(root: Path, embedded: dict) -> tuple[list[str], dict, str]:
    """The command of a tiny gpus_per_run: 2 training on the CPU, its params and run id, on a
    simulated machine of two GPUs (issue 23): the job takes both GPU slots."""
    embedded["train"]["gpus_per_run"] = 2
    embedded["gpus"] = {"count": 2, "slot_dir": str(root / "slots")}
    params_file, params, rid = write_profile(root, embedded, epochs=EPOCHS, n_images=64)
    command = [sys.executable, "-m", "cdrepro", "train", "--params", str(params_file), "--run", rid, "--threads", "1"]
    return command, params, rid


def start(command: list[str], root: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=root, env=dict(os.environ, CDREPRO_TRACKING="off"), stdout=out, stderr=subprocess.STDOUT
        )


def training_processes(torchrun: subprocess.Popen, rid: str) -> list[psutil.Process]:
    """The training processes torchrun started (its children running ``rid``)."""
    children = psutil.Process(torchrun.pid).children(recursive=True)
    return [p for p in children if rid in " ".join(p.cmdline())]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    def running(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.NoSuchProcess):
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        return False

    return [p for p in processes if running(p)]


def gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Those of ``processes`` still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(processes)


def kill_all(processes: list[psutil.Process]) -> None:
    for p in alive(processes):  # this test's own processes: none may outlive it
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


# --------------------------------------------------------------------------- end to end


@linux_only
@pytest.mark.slow
def test_a_sigkilled_two_process_training_leaves_no_process_and_its_rerun_resumes(embedded_params, tmp_path):
    """SIGKILL of the torchrun that ``cdrepro train`` became (``kill -9``, the OOM killer):
    before the fix its two training processes trained on as orphans, rank 0 holding the run's
    lock, and the rerun printed torch's 48-line traceback."""
    command, params, rid = two_process_run(tmp_path, embedded_params)
    files = files_of(params, rid)
    torchrun = start(command, tmp_path, tmp_path / "first.log")
    workers: list[psutil.Process] = []
    try:
        wait_for(files.checkpoint.exists, torchrun, "the first checkpoint", timeout=240)
        workers = training_processes(torchrun, rid)
        assert len(alive(workers)) == 2, (tmp_path / "first.log").read_text()[-3000:]
        # torchrun holds the two GPU slots the job took before it became torchrun, and its
        # processes see those GPUs only.
        assert gpu_slots._choose_alone(tmp_path / "slots", ["0", "1"], 1, 1) == []
        assert {p.environ()["CUDA_VISIBLE_DEVICES"] for p in workers} == {"0,1"}
        killed_at = load(files.checkpoint)["epoch"]
        torchrun.kill()
        torchrun.wait(timeout=30)
        left = gone_within(workers, 5.0)
        assert not left, f"left running after torchrun's SIGKILL: {[p.pid for p in left]}"
    finally:
        torchrun.kill()
        kill_all(workers)
    # The kernel freed the slots with torchrun: the rerun takes the same two at once.
    # Nothing trained on: the checkpoint is the one of the kill (or the next, were it being
    # renamed into place just then).
    assert load(files.checkpoint)["epoch"] <= killed_at + 1 < EPOCHS and not files.model.exists()
    killed_at = load(files.checkpoint)["epoch"]

    again = subprocess.run(
        command, cwd=tmp_path, env=dict(os.environ, CDREPRO_TRACKING="off"), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {files.checkpoint} at epoch {killed_at}" in again.stderr, again.stderr[-3000:]
    trained = re.findall(rf"{rid} epoch (\d+)/{EPOCHS}", again.stderr)  # rank 0's progress
    assert trained == [str(e) for e in range(killed_at + 1, EPOCHS + 1)], again.stderr[-3000:]
    assert f"{rid}: trained {EPOCHS} epochs" in again.stdout and "(2 processes)" in again.stdout
    assert f"{rid}: GPU slots 0.0,1.0 (GPUs 0,1; CUDA_VISIBLE_DEVICES=0,1)" in again.stderr
    assert "waiting for" not in again.stderr
    assert files.model.exists()


@linux_only
@pytest.mark.slow
def test_a_training_process_killed_under_torchrun_is_told_in_one_line(embedded_params, tmp_path):
    """Rank 1 SIGKILLed (as the OOM killer would): rank 0 sees only a closed connection and
    leaves it to the launcher, which names rank 1 and the signal; no torch log line, no traceback."""
    command, params, rid = two_process_run(tmp_path, embedded_params)
    files = files_of(params, rid)
    log = tmp_path / "killed.log"
    torchrun = start(command, tmp_path, log)
    workers: list[psutil.Process] = []
    try:
        wait_for(files.checkpoint.exists, torchrun, "the first checkpoint", timeout=240)
        workers = training_processes(torchrun, rid)
        rank_1 = next(p for p in workers if p.environ().get("RANK") == "1")
        rank_1.kill()
        torchrun.wait(timeout=60)
    finally:
        torchrun.kill()
        kill_all(workers)
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("cdrepro train:")]
    assert torchrun.returncode == 2, text[-3000:]
    assert len(errors) == 1 and text.rstrip().endswith(errors[0]), text[-3000:]
    assert f"training process 1 (pid {rank_1.pid}) was killed by SIGKILL" in errors[0]
    assert "resumes from its last checkpoint" in errors[0]
    assert "Traceback" not in text and "torch/distributed" not in text and "OMP_NUM_THREADS" not in text


# --------------------------------------------------------------------------- the pieces


def test_a_run_being_written_is_refused_in_one_line_before_torchrun_starts(
    embedded_params, tmp_path, monkeypatch, capsys
):
    command, params, rid = two_process_run(tmp_path, embedded_params)

    def execve(*args):
        raise AssertionError("torchrun started although the run is locked")

    for name in ("execv", "execve"):  # this test process must not become torchrun
        monkeypatch.setattr(cli.os, name, execve)
    with run_lock(ProfilePaths.from_params(params).lock(rid), rid, "training"):
        assert cli.main(command[3:]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cdrepro train: error:") and "being written by" in err[0], err


def _fork(child) -> int:
    """Run ``child()`` in a forked process; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            child()
        finally:
            os._exit(0)
    return pid


def _forked(child) -> int:
    """Run ``child()`` in a forked process to its end; its wait status."""
    return os.waitpid(_fork(child), 0)[1]


@linux_only
def test_a_launched_process_dies_with_its_launcher_and_one_whose_launcher_is_gone_dies_at_once():
    # The race: the launcher died before prctl took effect (the parent is not the launcher).
    status = _forked(lambda: launcher.die_with_parent(os.getpid()))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    # A launcher whose worker armed itself, then SIGKILLed: the kernel kills the worker.
    read, write = os.pipe()

    def a_launcher():  # not named `launcher`: that is the module under test
        if os.fork() == 0:  # the worker
            launcher.die_with_parent(os.getppid())
            os.write(write, f"{os.getpid()}\n".encode())
            time.sleep(60)
            os._exit(0)
        time.sleep(60)

    pid = _fork(a_launcher)
    worker = psutil.Process(int(os.read(read, 64).decode()))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    try:
        assert not gone_within([worker], 5.0), "the worker outlived its SIGKILLed launcher"
    finally:
        kill_all([worker])
        os.close(read)
        os.close(write)


def _failure(tmp_path: Path, monkeypatch, rank: int, exitcode: int, exc: Exception | None = None):
    """torchrun's record of a failed process; ``exc``: what the process left (``_leave_error``)."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    error_file = tmp_path / f"error-{rank}.json"
    if exc is not None:
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
        with contextlib.suppress(SystemExit):
            launcher._leave_error(exc, rank)
    return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file=str(error_file))


GLOO_CLOSED = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer")


@pytest.mark.parametrize(
    ("rank_0", "rank_1", "said"),
    [
        # An error of every rank: rank 0 printed it (main's one line); nothing more.
        ((2, ValueError("bad data")), (launcher.LEFT_TO_LAUNCHER, ValueError("bad data")), None),
        # Rank 1's own error: rank 0 saw only the closed connection.
        (
            (launcher.LEFT_TO_LAUNCHER, GLOO_CLOSED),
            (launcher.LEFT_TO_LAUNCHER, RuntimeError("CUDA out of\nmemory")),
            "training process 1: CUDA out of memory",
        ),
        # Rank 1 killed: no record of its own.
        (
            (launcher.LEFT_TO_LAUNCHER, GLOO_CLOSED),
            (-signal.SIGKILL, None),
            "training process 1 (pid 101) was killed by SIGKILL (out of memory, perhaps)",
        ),
        # Rank 0 lost its connection, and torchrun then stopped rank 1 (SIGTERM).
        (
            (launcher.LEFT_TO_LAUNCHER, GLOO_CLOSED),
            (-signal.SIGTERM, None),
            "training process 0: lost the other training processes: [../third_party/gloo",
        ),
    ],
)
def test_the_launcher_tells_the_first_cause_once(tmp_path, monkeypatch, capsys, rank_0, rank_1, said):
    failures = {rank: _failure(tmp_path, monkeypatch, rank, *failed) for rank, failed in enumerate([rank_0, rank_1])}
    assert launcher._report(failures) == 2
    err = capsys.readouterr().err.splitlines()
    if said is None:
        assert err == []
    else:
        assert len(err) == 1 and err[0].startswith(f"cdrepro train: error: {said}"), err
