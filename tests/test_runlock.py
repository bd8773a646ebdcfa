"""One writer per run (cdrepro.runlock): a second trainer or evaluator of a run that a live
process is writing stops at once with one line naming that process; a lock whose holder died,
however it died, never blocks."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_cli import RID, cli, error_line, params, write_params  # noqa: F401 (fixture)

from cdrepro.runlock import RunLocked, run_lock

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cdrepro.runlock import run_lock
    with run_lock(Path(sys.argv[1]), "r", "training"):
        print("held", flush=True)
        time.sleep(120)
""")


def hold_lock(path: Path) -> subprocess.Popen:
    """A process that holds the lock at ``path`` until killed (returns once it holds it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_trainer_stops_naming_the_holder_and_a_killed_holder_never_blocks(params, capsys):
    from cdrepro.runs import ProfilePaths

    write_params(params)
    paths = ProfilePaths.from_params(params)
    assert cli(capsys, "prepare", "--dataset", "digits")[0] == 0
    holder = hold_lock(paths.lock(RID))
    try:
        for command in ("train", "evaluate"):
            code, _, err = cli(capsys, command, "--run", RID, "--threads", "1")
            line = error_line(command, err)
            assert code == 2 and f"process {holder.pid}" in line and "one writer" in line, line
        assert not paths.run_dir(RID).exists(), "the refused trainer must leave nothing behind"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, out, _ = cli(capsys, "train", "--run", RID, "--threads", "1")  # the dead holder's lock
    assert code == 0 and RID in out


def _try_lock(path: str, start, results) -> None:
    start.wait()
    try:
        with run_lock(Path(path), "r", "training"):
            results.put(os.getpid())
            time.sleep(1.0)  # hold it while the others try
    except RunLocked:
        results.put(None)


def test_of_eight_processes_starting_at_once_exactly_one_writes(tmp_path):
    ctx = mp.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_try_lock, args=(str(tmp_path / "locks" / "r.lock"), start, results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert sum(pid is not None for pid in outcomes) == 1, outcomes


def test_the_lock_is_free_again_after_the_block_and_after_an_error(tmp_path):
    path = tmp_path / "r.lock"
    with pytest.raises(ValueError), run_lock(path, "r", "training"):
        raise ValueError("boom")
    # A second open file description in the same process is refused.
    with (
        run_lock(path, "r", "training"),
        pytest.raises(RunLocked, match=f"process {os.getpid()}"),
        run_lock(path, "r", "training"),
    ):
        pass
