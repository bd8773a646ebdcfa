"""cdrepro.checkpoint: a damaged checkpoint is named, with what deleting it does."""

from __future__ import annotations

import pytest
import torch

from cdrepro.checkpoint import DamagedCheckpoint, load_weights_only, resume_or_set_aside, save_state
from cdrepro.identity import RunIdentity


@pytest.mark.parametrize("damage", ["truncated", "emptied", "not a torch file", "directory flipped"])
def test_a_damaged_checkpoint_is_named_in_one_line(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_state(path, {"settings_digest": "x", "epoch": 3, "model": {"w": torch.arange(1000.0)}})
    data = bytearray(path.read_bytes())
    damaged = {
        "truncated": data[: len(data) // 2],
        "emptied": bytearray(),
        "not a torch file": bytearray(b"hello"),
        "directory flipped": data[:-400] + bytearray(b ^ 0xFF for b in data[-400:-370]) + data[-370:],
    }[damage]
    path.write_bytes(bytes(damaged))
    for load in (lambda: load_weights_only(path), lambda: resume_or_set_aside(path, RunIdentity("x", "y"))):
        with pytest.raises(DamagedCheckpoint) as info:
            load()
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "delete it" in message
