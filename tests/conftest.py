import copy
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Set at import, so that subprocesses (Snakemake, its jobs) inherit it too.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

# pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored in every process they
# start: the tests' Ctrl-C (SIGINT) would reach a training or a Snakemake that cannot hear it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end tests first (in their files' order): over pytest-xdist's workers
    (`make test`) the longest work starts at once instead of ending the run on one busy worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def no_tracking_unless_asked(monkeypatch):
    """MLflow tracking off, and never to the caller's server: a test that tracks turns it on
    and points it at a temporary store (tests/test_tracking.py)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CDREPRO_TRACKING", "off")


@pytest.fixture
def embedded_params():
    """A deep copy of the default params.yaml, for tests to modify."""
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))


@pytest.fixture
def one_torch_thread():
    """One torch thread (two are slower for these tiny models on a shared machine); the
    caller's count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
