"""Write files so that a crash leaves the old file or none, never a torn one.

The temporary file is named ``.<name>.<host>.<pid>.<random>.tmp``: a later write of the same
file removes those its own host's dead processes left (a SIGKILL mid-write), so none stays
forever, and never one of a live writer or of another host's (a shared file system). Its mode
is the umask's, as a plain ``open`` would give, not ``mkstemp``'s 0600: on a shared cluster the
group reads the models, metrics and tables.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The temporary file is in the same folder (so the rename is atomic on POSIX) and is removed
    if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(".", "_")
    _remove_dead_writers_files(path, host)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{host}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # A failed write() (a full disk, say) names no file; name the one being written.
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _remove_dead_writers_files(path: Path, host: str) -> None:
    """Temporary files of ``path`` left by processes of this host that no longer run."""
    for leftover in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = leftover.name[len(f".{path.name}.{host}.") :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
