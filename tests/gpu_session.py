"""``bash bench/gpu_session.sh MODE`` run on the CPU by a test: this Python first on PATH (the
script calls python3), its tarball unpacked. Shared by tests/test_gpu_session_script.py and
tests/test_packing_session.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_gpu_session(mode: str, folder: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """The script's run in ``folder`` with ``env`` (DEVICE=cpu and OUT=folder/out set here):
    its process, its tarball and the folder its files were unpacked into (absent if it made no
    tarball)."""
    out = folder / "out"
    environment = dict(
        os.environ, DEVICE="cpu", OUT=str(out), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_session.sh"), mode],
        env={**environment, **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=420,
    )
    tarball = out / f"session-{mode}.tar.gz"
    unpacked = folder / "unpacked"
    if tarball.is_file():
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
    return proc, tarball, unpacked / "files"
