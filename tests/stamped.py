"""Hand-made metrics records for tests of what reads them: stamped with the identity
(``cdrepro.identity``) the params give the run, as ``cdrepro evaluate`` stamps its records."""

from __future__ import annotations

from typing import Any

from cdrepro.run_settings import resolve_run
from cdrepro.runs import Run

# No prepared data in these tests: the tables then check the settings digest alone.
DATA_DIGEST = "0" * 16


def stamped(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the settings digest of its run under ``params``, and a data digest."""
    run = Run(record["dataset"], record["batch_size"], record["variant"], record["seed"])
    return {**record, "settings_digest": resolve_run(params, run).digest(), "data_digest": DATA_DIGEST}
