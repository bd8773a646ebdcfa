"""Starting a run's training processes, and telling in one line why they failed.

``cdrepro train`` with ``train.gpus_per_run`` > 1 becomes ``python -m cdrepro.launcher``
(``launch``): torchrun, whose failures read as one ``cdrepro train: error:`` line rather than
its traceback. The processes it starts (``launched_worker``) die with it (``die_with_parent``),
and leave their errors to it, so that one failure seen by every process is told once. What the
processes do together once started is ``cdrepro.distributed`` (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch.distributed as dist

log = logging.getLogger("cdrepro")

# The launcher's pid, set by ``cdrepro train`` for the torchrun it becomes (an exec: same pid):
# its training processes are children of that pid, and know by it that ``launch`` reads them.
LAUNCHER_ENV = "CDREPRO_LAUNCHER_PID"
LEFT_TO_LAUNCHER = 3  # the exit status of a process that left its error for ``launch`` to tell
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` (the launcher) dies; Linux only.

    torchrun starts its processes in sessions of their own, so a SIGKILLed torchrun (the OOM
    killer, ``kill -9``, a lost node agent) leaves them training on as orphans, rank 0 holding
    the run's lock: the rerun cannot start. Killing them anywhere loses nothing: every file is
    written atomically and the rerun resumes from the last checkpoint. Only under ``launch``:
    the signal comes when the parent *thread* ends, and torchrun starts its processes from its
    main thread; a launcher that started them from a passing thread would have them killed.
    Elsewhere than Linux nothing is done."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return
    # The launcher may have died before prctl: then this process is an orphan already (its
    # parent is another), and no signal will come.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _lost_peers(exc: BaseException) -> bool:
    """Whether ``exc`` only says that another process went away or stopped answering: torch's
    distributed errors, and gloo's, which come as plain RuntimeErrors naming gloo's sources."""
    return isinstance(exc, dist.DistError) or "/gloo/" in str(exc)


def _leave_error(exc: Exception, rank: int) -> None:
    """Record ``exc`` where torchrun reads it back for ``launch``; then exit quietly unless this
    is rank 0 with an error of its own, which it prints itself (the record says so)."""
    said = rank == 0 and not _lost_peers(exc)
    record = {
        "message": " ".join(str(exc).split()) or type(exc).__name__,
        "timestamp": int(time.time()),
        "peers_lost": _lost_peers(exc),
        "said": said,
    }
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")  # set by torchrun for each process
    with contextlib.suppress(OSError):
        if path:
            Path(path).write_text(json.dumps(record))
    if not said:
        raise SystemExit(LEFT_TO_LAUNCHER) from exc


@contextlib.contextmanager
def launched_worker() -> Iterator[None]:
    """The body of a training process that ``launch`` started; outside one, nothing is done.

    The process dies with the launcher, and leaves its errors to it: an error that every rank
    meets, or one rank's crash that the others see as a closed connection, would otherwise be
    printed once a process. Rank 0 prints its own errors as one process would; the others, and
    rank 0 when all it saw was another process going away, exit quietly (``_leave_error``), and
    ``launch`` tells the first cause. With ``--verbose`` every process prints its traceback."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher:
        yield
        return
    die_with_parent(int(launcher))
    rank = int(os.environ.get("RANK", "0"))
    try:
        yield
    except KeyboardInterrupt:  # torchrun passes a Ctrl-C on to every rank: rank 0 says so
        if rank:
            raise SystemExit(130) from None
        raise
    except Exception as exc:
        if not logging.getLogger().isEnabledFor(logging.DEBUG):  # --verbose
            _leave_error(exc, rank)
        raise


def _say(line: str) -> None:
    print(f"cdrepro train: {line}", file=sys.stderr, flush=True)


def _record(failure: Any) -> dict[str, Any]:
    """What ``_leave_error`` wrote for a failed process; empty if nothing."""
    data = failure.error_file_data
    return data if isinstance(data, dict) and "peers_lost" in data else {}


def _failure_line(rank: int, failure: Any) -> str:
    record = _record(failure)
    if record:
        lost = "lost the other training processes: " if record["peers_lost"] else ""
        return f"training process {rank}: {lost}{record['message']}"
    if failure.exitcode < 0:
        oom = " (out of memory, perhaps)" if failure.exitcode == -signal.SIGKILL else ""
        return (
            f"training process {rank} (pid {failure.pid}) was killed by {failure.signal_name()}{oom} "
            "and the others were stopped; nothing was left half-written: run the same command "
            "again (training resumes from its last checkpoint)"
        )
    return (
        f"training process {rank} (pid {failure.pid}) ended with exit status {failure.exitcode}; "
        "run with --verbose for torch's report"
    )


def _report(failures: dict[int, Any]) -> int:
    """Tell in one line why the training processes failed, unless rank 0 has; the exit status.

    The cause is the earliest failure that is neither a process that lost the others nor one
    that torchrun stopped (SIGTERM) once another had failed."""
    said = [f for f in failures.values() if _record(f).get("said")]
    if said:
        return said[0].exitcode if said[0].exitcode > 0 else 2

    def order(item: tuple[int, Any]) -> tuple[bool, int, int]:
        rank, failure = item
        stopped = _record(failure).get("peers_lost") or failure.exitcode == -signal.SIGTERM
        return bool(stopped), failure.timestamp, rank

    _say("error: " + _failure_line(*min(failures.items(), key=order)))
    return 2


def _interrupted(signum: int) -> int:
    """torchrun got ``signum`` and stopped the processes; after a Ctrl-C (SIGINT) rank 0 has said
    so itself (its KeyboardInterrupt)."""
    if signum != signal.SIGINT:
        _say(
            f"interrupted by {signal.Signals(signum).name}; nothing was left half-written: run the "
            "same command again (training resumes from its last checkpoint)"
        )
    return 128 + signum


def launch(argv: list[str]) -> int:
    """torchrun with ``argv`` (its options, then ``-m cdrepro -- train ...``); the exit status.

    A failure reads as one ``cdrepro train:`` line (rank 0's own, or one said here), not as
    torch's log lines and its launcher's traceback; ``--verbose`` keeps torch's report."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if "--verbose" in argv:
        torchrun.main(argv)
        return 0
    logging.disable(logging.CRITICAL)  # this process's logging is torch's launcher's alone
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        return _report(exc.failures)
    except SignalException as exc:
        return _interrupted(exc.sigval)
    except Exception as exc:
        _say(f"error: torchrun could not run the training processes: {' '.join(str(exc).split())}")
        return 2
    return 0


if __name__ == "__main__":  # python -m cdrepro.launcher <torchrun's arguments>: see launch
    sys.exit(launch(sys.argv[1:]))
