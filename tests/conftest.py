import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def embedded_params():
    """A deep copy of the default params.yaml, for tests to modify."""
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
