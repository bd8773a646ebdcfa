"""A run's identity: what its checkpoint, model and metrics.json must match to be used.

Two digests: the settings' (``RunSettings.digest``: every setting that changes what training
computes) and the prepared data's (``PreparedDataset.digest``: its array file's SHA-256). A
changed params file or a changed dataset (``images_per_class``, a file added to the folder, a
new ``store_size``) is a new identity, so a new training; the same run id is not enough.

Files written before data digests existed hold only the settings digest. They are accepted
once, as of the current data, with a warning (``LEGACY_DATA``): that keeps old checkpoints
usable, and the next file written carries both digests (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SETTINGS_KEY, DATA_KEY = "settings_digest", "data_digest"
LEGACY_DATA = "unknown"
"""The data digest of a file written before data digests existed."""


@dataclass(frozen=True)
class RunIdentity:
    settings: str
    data: str

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> RunIdentity:
        """The identity a checkpoint, model.pt or metrics.json records (``LEGACY_DATA`` where it
        predates data digests)."""
        return cls(str(record.get(SETTINGS_KEY)), str(record.get(DATA_KEY, LEGACY_DATA)))

    @property
    def key(self) -> str:
        """``<settings>-<data>``: the name of a checkpoint set aside under this identity."""
        return f"{self.settings}-{self.data}"

    def fields(self) -> dict[str, str]:
        """The two digests as a file records them."""
        return {SETTINGS_KEY: self.settings, DATA_KEY: self.data}

    def mismatch(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` is not of this identity ("settings ..." / "data ..."), or None. A
        record without a data digest matches on its settings alone (``is_legacy`` says so)."""
        found = RunIdentity.of(record)
        if found.settings != self.settings:
            return f"other settings (hash {found.settings}, expected {self.settings})"
        if found.data not in (self.data, LEGACY_DATA):
            return f"other data (data digest {found.data}, the prepared dataset's is {self.data})"
        return None


def is_legacy(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` was written before data digests existed."""
    return DATA_KEY not in record
