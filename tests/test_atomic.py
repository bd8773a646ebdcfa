"""cdrepro.atomic: whole files or none, the umask's mode, and no temporary file left forever."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cdrepro.atomic import write_bytes, write_json, write_text
from cdrepro.checkpoint import save_state


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize(
    "write",
    [
        lambda p: write_text(p, "x"),
        lambda p: write_bytes(p, b"x"),
        lambda p: write_json(p, {"a": 1}),
        lambda p: save_state(p, {"w": [1, 2]}),
    ],
)
def test_outputs_get_the_umask_mode_not_mkstemp_0600(tmp_path, umask_022, write):
    path = tmp_path / "out"
    write(path)
    assert path.stat().st_mode & 0o777 == 0o644  # group and others read, as with open()
    os.umask(0o002)
    write(path)  # a rewrite follows the umask in force then
    assert path.stat().st_mode & 0o777 == 0o664


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write_a_live_ones_kept(tmp_path):
    host = socket.gethostname().replace(".", "_")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    left = tmp_path / f".checkpoint.pt.{host}.{dead_pid}.k2j3.tmp"
    live = tmp_path / f".checkpoint.pt.{host}.{os.getpid()}.q9w8.tmp"
    elsewhere = tmp_path / f".checkpoint.pt.otherhost.{dead_pid}.z1.tmp"  # maybe live there
    for path in (left, live, elsewhere):
        path.write_bytes(b"partial")
    save_state(tmp_path / "checkpoint.pt", {"epoch": 1})
    assert not left.exists()
    assert live.exists() and elsewhere.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", live.name, elsewhere.name])
