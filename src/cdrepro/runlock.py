"""One writer per run: an exclusive lock that ``cdrepro train`` and ``cdrepro evaluate`` hold
while they write a run's files, whoever started them (Snakemake, DVC, a shell, a requeued
SLURM job).

The lock is ``flock`` on ``<results_dir>/<profile>/locks/<run id>.lock``: the kernel releases
it when its process ends, however it ends (SIGKILL included), so a lock left by a dead process
never blocks. The file holds who took it, for the message a second writer gets; its holder
removes it on release, and a taker checks that the file it locked is still the one at the path
(else a holder removed it meanwhile, and it tries again), so removing it cannot let two in. A
file left by a killed holder is simply locked again. It lives outside the run's folder, whose
contents DVC hashes.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path


class RunLocked(RuntimeError):
    """Another live process is writing this run; the message names it."""


def _holder() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"process {holder['pid']} on {holder['host']} (since {holder['since']}: {holder['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _take(path: Path, run: str, doing: str) -> int:
    """An open descriptor of ``path`` holding its lock; RunLocked if a live process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(
                f"run {run} is being written by {_describe(path)}; a run has one writer at a "
                f"time, so this {doing} did not start. Wait for that process to finish, or stop "
                f"it (a killed process releases the lock {path} at once)"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file its holder removed on release: take the new one


@contextlib.contextmanager
def run_lock(path: Path, run: str, doing: str) -> Iterator[None]:
    """Hold the run's lock for the block, or raise RunLocked at once if a live process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _take(path, run, doing)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: see the module docstring
        os.close(fd)  # releases the lock
