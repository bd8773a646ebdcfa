import pytest

from cdrepro.run_settings import resolve_run
from cdrepro.runs import Run


@pytest.fixture
def settings_of(embedded_params):
    """The resolved settings of a run of ``variant`` on digits (batch 128 unless given), after
    ``edit(params)`` if given: variants and methods can be added there."""

    def make(variant: str, batch_size: int = 128, edit=None):
        if edit is not None:
            edit(embedded_params)
        return resolve_run(embedded_params, Run("digits", batch_size, variant, 42))

    return make
