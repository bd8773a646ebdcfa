"""Checkpoints made outside this pipeline: the authors' released models, or a bare state dict of ours.

Each method says how its original authors' layout maps onto its own keys
(``Method.authors_layout``: their first key component -> ours). CD's authors' ``Network``
(github.com/Hoper-J/Contrastive-Disentangling, ``modules/network.py``) has the same three
parts as ``cdrepro.methods.cd.ContrastiveDisentangling`` with the same layers in the same
order; only the backbone's attribute is named differently:

==========================  ==========================
authors                     ours
==========================  ==========================
``resnet.*``                ``backbone.*``
``instance_projector.*``    ``instance_projector.*``
``feature_predictor.*``     ``feature_predictor.*``
==========================  ==========================

Below the prefix the names are torchvision's ResNet names (``conv1``, ``bn1``,
``layer1.0.conv1``, ...), which our backbone has at torchvision's width (64; the paper's
models). Their released files hold ``model.state_dict()`` itself; their training checkpoints
hold it under ``state_dict``. Ours (``model.pt``) hold it under ``model``.

Files are read with ``weights_only=True`` (``cdrepro.checkpoint``): a file of unknown origin
never runs code. Names are mapped, then checked against the run's model before loading, so a
file for another architecture fails with one line naming the keys that do not fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdrepro.checkpoint import load_weights_only
from cdrepro.methods import Method
from cdrepro.runs import ProfilePaths

AUTHORS = "authors"
OURS = "ours"
SHOWN_KEYS = 4  # per list in an error message: enough to recognise the pattern, still one line


class CheckpointLayoutError(ValueError):
    """A checkpoint's keys or shapes do not fit the run's model; the message names them."""


def unwrap(loaded: Any, source: Path) -> Mapping[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned: ours (``model``), CD's authors'
    training checkpoint (``state_dict``), CC's (``net``), or a bare state dict (the authors'
    released files)."""
    if not isinstance(loaded, Mapping):
        raise CheckpointLayoutError(
            f"{source}: expected a state dict (a mapping of names to tensors), found {type(loaded).__name__}"
        )
    for wrapper in ("model", "state_dict", "net"):
        if isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    not_tensors = [key for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointLayoutError(f"{source}: not a state dict: {_some(not_tensors)} are not tensors")
    return loaded


def layout_of(state: Mapping[str, torch.Tensor]) -> str:
    """``authors`` when the backbone is named ``resnet``, else ``ours``."""
    return AUTHORS if any(key.split(".", 1)[0] == "resnet" for key in state) else OURS


def to_our_names(state: Mapping[str, torch.Tensor], authors_to_ours: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """The authors' names mapped to ours (``authors_to_ours``: a method's ``authors_layout``).
    Keys under another prefix are kept as they are, so the check against the model reports them
    as unexpected rather than dropping them silently."""
    mapped = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        mapped[f"{authors_to_ours[head]}.{rest}" if head in authors_to_ours and rest else key] = value
    return mapped


def _some(keys: list[str]) -> str:
    """At most SHOWN_KEYS names, and how many more there are."""
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" (and {len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def mismatches(state: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """What keeps ``state`` from loading into ``model``: missing and unexpected keys, and keys
    whose shapes differ; empty when it fits exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_some(unexpected)}")
    if reshaped:
        problems.append(f"shapes (file vs model): {_some(reshaped)}")
    return problems


def load_checkpoint(path: Path, model: Method, run: str) -> str:
    """Load a checkpoint of either layout into ``model`` (the run's architecture); return the
    layout found. CheckpointLayoutError names what does not fit, in our names."""
    state = unwrap(load_weights_only(path), path)
    layout = layout_of(state)
    mapped = to_our_names(state, type(model).authors_layout) if layout == AUTHORS else dict(state)
    problems = mismatches(mapped, model)
    if problems:
        hint = ""
        if layout == AUTHORS and not any(key.startswith("backbone.conv1.") for key in model.state_dict()):
            hint = "; the authors' models are torchvision ResNets, which needs model.backbone_width: 64 in the params"
        raise CheckpointLayoutError(
            f"{path} ({layout} layout, names shown in ours) does not fit run {run}'s model: "
            + "; ".join(problems)
            + hint
        )
    model.load_state_dict(mapped)
    return layout


def default_metrics_path(paths: ProfilePaths, run: str, checkpoint: Path) -> Path:
    """Where the metrics of an outside checkpoint go by default: beside the profile's runs, not
    in them, so a trained run's own metrics.json is never overwritten by accident."""
    return paths.root / "released" / run / f"{Path(checkpoint).stem}.metrics.json"
