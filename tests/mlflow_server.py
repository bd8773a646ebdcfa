"""An `mlflow server` for a test: on a free loopback port, one worker, stopped (its whole process
group: the server runs uvicorn workers) when the block ends, passed or not. Shared by the tests
that log through a server or open the MLflow UI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    """Until the server answers /health (MLflow creates its store's schema first: seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def mlflow_server(
    store_uri: str,
    cwd: Path,
    *options: str,
    log: Path | None = None,
    mlflow: Sequence[str] = (sys.executable, "-m", "mlflow"),
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The URL of `mlflow server` on ``store_uri`` with ``options``, once it is healthy.
    ``log``: where its output goes (its end is in the error if it never gets healthy);
    ``mlflow``: the command (a user's `mlflow` on PATH, say); ``env``: its environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*mlflow, "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") if log else open(os.devnull, "w") as out:  # the server keeps its own copy
        server = subprocess.Popen(
            [*command, "--workers", "1", *options],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_healthy(url, server)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:] if log else ''}") from None
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
