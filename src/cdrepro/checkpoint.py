"""Training state on disk: written atomically, loaded safely, refused when it is not ours."""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from cdrepro.atomic import write_bytes
from cdrepro.identity import RunIdentity, is_legacy

log = logging.getLogger(__name__)


class CheckpointMismatch(RuntimeError):
    """A checkpoint was written for other settings than the run asking for it."""


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that a crash mid-write leaves the previous file intact.

    Serialised in memory first: ``torch.save`` to a file records the file's name inside the
    archive, and the temporary name would make every save of the same state differ in bytes.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint holds objects other than tensors and plain data; it is not loaded."""


def load_weights_only(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``, with a message that says what to do on refusal.

    torch's own message suggests retrying with ``weights_only=False``, which would execute
    whatever the file's pickle asks for: never do that with a file of unknown origin.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower() and "unsupported" not in str(exc).lower():
            raise _damaged(path, exc) from exc
        raise UnsafeCheckpoint(
            f"{path} holds objects other than tensors and plain data and was refused (nothing in "
            "it was run); delete it so the run trains again, or use a checkpoint you trust"
        ) from exc
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError) as exc:  # torch's archive reader
        raise _damaged(path, exc) from exc
    if not isinstance(state, dict):
        raise _damaged(path, TypeError(f"a {type(state).__name__}, not a mapping"))
    return state


class DamagedCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read (truncated, bit-flipped, not a torch file)."""


def _damaged(path: Path, exc: BaseException) -> DamagedCheckpoint:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DamagedCheckpoint(
        f"{path} is damaged and cannot be read ({first}); delete it: a checkpoint.pt then "
        "trains its run again from the start, a model.pt is written again by training"
    )


def load_state(path: Path, identity: RunIdentity) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check it belongs to this run's identity
    (its settings and its data)."""
    state = load_weights_only(path)
    problem = identity.mismatch(state)
    if problem:
        raise CheckpointMismatch(
            f"{path} was written by a run with {problem}; it will not be reused. Delete it (or the "
            "run's folder) to train this run from scratch."
        )
    _warn_if_legacy(path, state, identity)
    return state


def _warn_if_legacy(path: Path, state: dict[str, Any], identity: RunIdentity) -> None:
    if is_legacy(state):
        log.warning(
            "%s predates data digests; taken as trained on the current data (%s). If the "
            "dataset changed since, delete it to train again",
            path,
            identity.data,
        )


def aside_path(path: Path, identity: RunIdentity) -> Path:
    """Where a checkpoint of ``identity`` is kept while the run trains under another one."""
    return path.with_name(f"{path.name}.{identity.key}.aside")


def resume_or_set_aside(path: Path, identity: RunIdentity) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None to start afresh.

    Finished work is never thrown away. A checkpoint of another identity (the params or the
    data changed, so the workflow re-runs the run) is renamed to ``<name>.<its identity>.aside``
    beside the original, with a warning; one set aside earlier under this run's identity (params
    switched A, B, A) is taken back and resumed. Of two checkpoints of one identity, the one
    further along is kept.
    """
    if path.exists():
        state = load_weights_only(path)
        problem = identity.mismatch(state)
        if problem is None:
            _warn_if_legacy(path, state, identity)
            return state
        kept = _set_aside(path, state)
        log.warning("%s was written by a run with %s; kept as %s", path, problem, kept.name)
    return _take_back(path, identity)


def _epoch(state: dict[str, Any]) -> int:
    return int(state.get("epoch", 0))


def _set_aside(path: Path, state: dict[str, Any]) -> Path:
    """Move ``path`` (holding ``state``) to its identity's aside name, unless a checkpoint
    already there is further along (then ``path`` is the lesser copy and goes)."""
    target = aside_path(path, RunIdentity.of(state))
    if target.exists() and _epoch(load_weights_only(target)) > _epoch(state):
        path.unlink()
    else:
        path.replace(target)
    return target


def _take_back(path: Path, identity: RunIdentity) -> dict[str, Any] | None:
    aside = aside_path(path, identity)
    if not aside.exists():
        return None
    state = load_weights_only(aside)
    if identity.mismatch(state) is not None:  # renamed by hand: not ours to resume
        return None
    aside.replace(path)
    log.info(
        "taking back the checkpoint set aside as %s (epoch %d) for this run's settings and data",
        aside.name,
        _epoch(state),
    )
    return state
