"""Which GPUs of this machine a job uses: its GPU slots (docs/cluster.md, "One machine").

Snakemake counts GPUs but does not assign them, so each training or evaluation job picks its
own. Every GPU has ``gpus.runs_per_gpu`` slots, each a lock file held with ``flock`` while the
job runs: the kernel releases it when the process ends, however it ends (SIGKILL included), so
a dead job's slot is free at once, as a dead writer's run lock is (runlock.py). A job that
wants n GPUs (``train.gpus_per_run``) takes n slots on n distinct GPUs, the least loaded GPUs
first, and waits, saying so, while there are not enough. It then sets ``CUDA_VISIBLE_DEVICES``
to its GPUs before CUDA starts, so that it, and the processes torchrun starts for it (which
inherit the variable), use those only.

The GPUs to choose among are ``CUDA_VISIBLE_DEVICES``'s where it is set (by a scheduler, or by
the user: the job keeps to them), else those CUDA counts. ``gpus.count`` may give their number
instead, which on the CPU simulates a machine with GPUs: slots are taken, nothing else changes
(tests/test_gpu_slots.py, tests/workflow/test_gpu_slots_workflow.py).

Choosing is serialised by one more lock (``choosing.lock``), held for the moment of a choice:
two jobs starting together then see each other's slots and spread over the GPUs, rather than
both taking the one that looked least loaded. Each take and release is appended to
``record.jsonl`` in the slots' folder: who held which slot when (a job that became torchrun
records no release: its slots are free when torchrun ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("cdrepro")

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
# The slots a job holds, for the processes it starts (torchrun's): they use them, not take more.
SLOTS_ENV = "CDREPRO_GPU_SLOTS"
RECORD = "record.jsonl"
CHOOSING = "choosing.lock"
POLL_SECONDS = 1.0  # how often a waiting job looks for a free slot
SAY_EVERY_SECONDS = 300.0  # how often it says, in its log, that it is still waiting


@dataclass(frozen=True)
class Slot:
    gpu: str  # as CUDA_VISIBLE_DEVICES names it: an index, or a UUID
    index: int  # which of the GPU's runs_per_gpu slots

    @property
    def name(self) -> str:
        return f"{self.gpu}.{self.index}"

    @classmethod
    def parse(cls, name: str) -> Slot:
        gpu, index = name.rsplit(".", 1)
        return cls(gpu, int(index))

    def file(self, folder: Path) -> Path:
        return folder / f"gpu{re.sub(r'[^A-Za-z0-9_-]', '_', self.gpu)}-slot{self.index}.lock"


@dataclass
class Placement:
    """The slots a job holds, and the open descriptors that hold them (none when a launcher
    holds them for it)."""

    slots: tuple[Slot, ...]
    fds: list[int] = field(default_factory=list)

    @property
    def gpus(self) -> str:
        return ",".join(slot.gpu for slot in self.slots)

    @property
    def names(self) -> str:
        return ",".join(slot.name for slot in self.slots)

    def describe(self) -> str:
        plural = "s" if len(self.slots) > 1 else ""
        return f"GPU slot{plural} {self.names} (GPU{plural} {self.gpus}; {VISIBLE_ENV}={self.gpus})"

    def keep_across_exec(self) -> None:
        """Let the slots' locks pass to the program this process becomes (torchrun): an open
        descriptor survives exec unless marked close-on-exec, as Python marks its own."""
        for fd in self.fds:
            os.set_inheritable(fd, True)


# --------------------------------------------------------------------------- which GPUs


def cuda_gpu_count() -> int:
    """The GPUs CUDA shows (honouring CUDA_VISIBLE_DEVICES), counted without starting CUDA
    where NVML answers (torch.cuda.device_count's note), as on any machine with NVIDIA's
    driver: the variable can still be changed afterwards."""
    import torch

    return torch.cuda.device_count()


def gpu_count(params: dict[str, Any]) -> int:
    """How many GPUs the jobs of ``params`` choose among: ``gpus.count``, or for ``auto`` those
    CUDA shows when the runs train on CUDA (``train.device`` not cpu), none otherwise."""
    count = params["gpus"]["count"]
    if count != "auto":
        return int(count)
    return 0 if params["train"]["device"] == "cpu" else cuda_gpu_count()


def check_cuda_sees_its_gpus(environ: MutableMapping[str, str] | None = None) -> None:
    """Once CUDA is in use: a job holding slots sees their GPUs only. Else CUDA started before
    CUDA_VISIBLE_DEVICES named them (counting GPUs had to start it: NVML did not answer), and
    the job would run on GPUs that other jobs hold; it stops instead, saying what to do."""
    environ = os.environ if environ is None else environ
    held = environ.get(SLOTS_ENV)
    if not held:
        return
    import torch

    torch.cuda.init()  # from here device_count is the driver's, not NVML's reading of the variable
    seen, slots = torch.cuda.device_count(), held.split(",")
    if seen != len(slots):
        raise RuntimeError(
            f"this job holds GPU slot(s) {held} but CUDA shows it {seen} GPUs for "
            f"{VISIBLE_ENV}={environ.get(VISIBLE_ENV)}: gpus.count names more GPUs than the machine "
            "has, or CUDA started before the variable named the job's GPUs (counting them without "
            "NVML does that). Set gpus.count in the params file to the machine's number of GPUs"
        )


def machine_slots(params: dict[str, Any]) -> int:
    """The slots of this machine: GPUs x runs_per_gpu; the Snakemake resource ``gpu_slot``."""
    return gpu_count(params) * params["gpus"]["runs_per_gpu"]


def candidate_gpus(count: int, environ: MutableMapping[str, str]) -> list[str]:
    """The names of the GPUs to choose among: the first ``count`` of CUDA_VISIBLE_DEVICES where
    it is set (so a scheduler's or the user's choice is kept), else 0 .. count-1."""
    if VISIBLE_ENV in environ:
        return [gpu.strip() for gpu in environ[VISIBLE_ENV].split(",") if gpu.strip()][:count]
    return [str(i) for i in range(count)]


def slot_folder(base: str | Path, environ: MutableMapping[str, str]) -> Path:
    """Where the locks live. Under SLURM the job's GPUs are its own, and SLURM may name them
    0, 1, ... in every job (cgroup-constrained devices): machine-wide locks would then keep
    jobs on different GPUs apart, so each SLURM job has a folder of its own."""
    job = environ.get("SLURM_JOB_ID")
    return Path(base) / f"slurm-job-{job}" if job else Path(base)


# --------------------------------------------------------------------------- the locks


def _make_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # every user of the machine shares the slots, as /tmp
        os.chmod(folder, 0o1777)


def _open_lock_file(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):  # the umask narrows 0o666; another user's file stays so
        os.fchmod(fd, 0o666)
    return fd


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s lock, or None when another process holds it."""
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _is_free(path: Path) -> bool:
    fd = _try_lock(path)
    if fd is not None:
        os.close(fd)
    return fd is not None


def _choose(folder: Path, gpus: list[str], runs_per_gpu: int, wanted: int) -> list[tuple[Slot, int]]:
    """``wanted`` free slots on as many distinct GPUs, the least loaded GPUs first (ties: in
    their order), each held by its descriptor; empty when fewer GPUs have a free slot. Called
    under the choosing lock, so that what it sees free stays free until it takes it."""
    free = {gpu: [k for k in range(runs_per_gpu) if _is_free(Slot(gpu, k).file(folder))] for gpu in gpus}
    least_loaded = sorted((gpu for gpu in gpus if free[gpu]), key=lambda gpu: -len(free[gpu]))
    if len(least_loaded) < wanted:
        return []
    taken: list[tuple[Slot, int]] = []
    for gpu in least_loaded[:wanted]:
        slot = Slot(gpu, free[gpu][0])
        fd = _try_lock(slot.file(folder))
        if fd is None:  # taken meanwhile by a process that does not choose under the lock
            for _, held in taken:
                os.close(held)
            return []
        taken.append((slot, fd))
    return taken


def _choose_alone(folder: Path, gpus: list[str], runs_per_gpu: int, wanted: int) -> list[tuple[Slot, int]]:
    fd = _open_lock_file(folder / CHOOSING)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for the choice only; a killed chooser frees it
        return _choose(folder, gpus, runs_per_gpu, wanted)
    finally:
        os.close(fd)


def _write_holder(fd: int, job: str) -> None:
    """Who holds the slot, for the message of a job that waits."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"job": job, "pid": os.getpid()}).encode(), 0)


def _holders(folder: Path, gpus: list[str], runs_per_gpu: int) -> str:
    held = []
    for gpu in gpus:
        for k in range(runs_per_gpu):
            slot = Slot(gpu, k)
            if _is_free(slot.file(folder)):
                continue
            try:
                holder = json.loads(slot.file(folder).read_text())
                held.append(f"{slot.name} by {holder['job']} (pid {holder['pid']})")
            except (OSError, ValueError, KeyError, TypeError):  # being written: it is held anyway
                held.append(slot.name)
    return ", ".join(held) or "none (the GPUs' slots are being chosen)"


def _record(folder: Path, event: str, placement: Placement, job: str) -> None:
    """One line of record.jsonl: one write with O_APPEND, so concurrent jobs' lines stay whole."""
    line = {"time": time.time(), "event": event, "slots": placement.names, "job": job, "pid": os.getpid()}
    fd = os.open(folder / RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):  # as the locks: every user of the machine appends
        os.fchmod(fd, 0o666)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def take(
    folder: Path,
    gpus: list[str],
    runs_per_gpu: int,
    wanted: int,
    job: str,
    poll_seconds: float = POLL_SECONDS,
    say_every_seconds: float = SAY_EVERY_SECONDS,
) -> Placement:
    """Hold ``wanted`` slots on distinct GPUs of ``gpus``, waiting while there are not enough."""
    if wanted > len(gpus):
        raise ValueError(
            f"{job} needs {wanted} GPUs (train.gpus_per_run) but this job may use {len(gpus)} "
            f"({', '.join(gpus) or 'none'}: gpus.count, or {VISIBLE_ENV} where set); lower "
            "train.gpus_per_run, or run it where it has that many GPUs"
        )
    _make_folder(folder)
    said_at = None
    while not (taken := _choose_alone(folder, gpus, runs_per_gpu, wanted)):
        if said_at is None or time.monotonic() - said_at >= say_every_seconds:
            log.info(
                "%s: waiting for %d free GPU slot(s) on distinct GPUs of %s (%d a GPU); held: %s",
                job,
                wanted,
                ",".join(gpus),
                runs_per_gpu,
                _holders(folder, gpus, runs_per_gpu),
            )
            said_at = time.monotonic()
        time.sleep(poll_seconds)
    for _, fd in taken:
        _write_holder(fd, job)
    placement = Placement(tuple(slot for slot, _ in taken), [fd for _, fd in taken])
    _record(folder, "took", placement, job)
    return placement


def release(placement: Placement, folder: Path, job: str) -> None:
    _record(folder, "released", placement, job)  # first: once unlocked, the next may record
    for fd in placement.fds:
        os.close(fd)


# --------------------------------------------------------------------------- a job's slots


@contextlib.contextmanager
def _environment(environ: MutableMapping[str, str], values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``environ`` for the block, then put back (a test runs several jobs in one process)."""
    before = {name: environ.get(name) for name in values}
    environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value


@contextlib.contextmanager
def placed(
    params: dict[str, Any], wanted: int, job: str, environ: MutableMapping[str, str] | None = None
) -> Iterator[Placement | None]:
    """Hold ``wanted`` GPU slots for the block, with CUDA_VISIBLE_DEVICES naming their GPUs;
    the job's log says which. None where jobs take no slots (training on the CPU, gpus.count
    0), and where the block runs under torchrun started by hand (the user placed it). Under
    torchrun started by ``cdrepro train`` the slots it took are given, held by the launcher."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" in environ:
        inherited = environ.get(SLOTS_ENV)
        yield Placement(tuple(Slot.parse(name) for name in inherited.split(","))) if inherited else None
        return
    count = gpu_count(params)
    if not count:
        yield None
        return
    folder = slot_folder(params["gpus"]["slot_dir"], environ)
    placement = take(folder, candidate_gpus(count, environ), params["gpus"]["runs_per_gpu"], wanted, job)
    try:
        log.info("%s: %s", job, placement.describe())
        with _environment(environ, {VISIBLE_ENV: placement.gpus, SLOTS_ENV: placement.names}):
            yield placement
    finally:
        release(placement, folder, job)
