import copy
import os
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Set at import, so that subprocesses (Snakemake, its jobs) inherit it too.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


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
