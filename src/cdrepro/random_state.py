"""A run's random state: the seed of each rank's augmentation generator, and the generators'
states its checkpoint carries, so that a resumed run draws what an uninterrupted one would.

``rng_state`` is the checkpoint's ``rng`` entry: torch's global generator (and CUDA's), the
shuffle's (every rank draws the same permutation) and the augmentation's; under DDP also every
rank's own augmentation state (``augment_by_rank``), gathered for rank 0, which alone writes the
checkpoint. ``restore_rng`` puts it back on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from cdrepro.distributed import Ranks

# Rank r > 0 seeds its augmentation generator with seed + 1 + r * RANK_SEED_STRIDE: apart from
# every other rank's and, for seeds below 2**32, from every other run's rank 0 (seed + 1).
RANK_SEED_STRIDE = 2**32


def augment_seed(seed: int, ranks: Ranks) -> int:
    """The seed of this rank's augmentation generator; rank 0's is the single-process one."""
    return seed + 1 + ranks.rank * RANK_SEED_STRIDE


def rng_state(shuffle: torch.Generator, augment: torch.Generator, ranks: Ranks) -> dict[str, Any]:
    """The checkpoint's ``rng`` entry (a collective under DDP: every rank must call it; rank
    0's is the one saved). In one process it holds no ``augment_by_rank``, so a single-process
    checkpoint is what it always was."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "shuffle": shuffle.get_state(),
        "augment": augment.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state | augment_states(augment, ranks)


def augment_states(generator: torch.Generator, ranks: Ranks) -> dict[str, list[torch.Tensor]]:
    """Every rank's augmentation generator state, for rank 0's checkpoint (a collective: every
    rank must call it). Empty in one process, so a single-process checkpoint is unchanged."""
    if not ranks.distributed:
        return {}
    states: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(states, generator.get_state())
    return {"augment_by_rank": states}


def restore_rng(
    state: dict[str, Any], shuffle: torch.Generator, augment: torch.Generator, seed: int, ranks: Ranks
) -> None:
    """Put a checkpoint's ``rng`` entry back: torch's, CUDA's, the shuffle's and rank 0's
    augmentation state on every rank, then each other rank's own (``restore_augment_state``)."""
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    augment.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    restore_augment_state(state, augment, seed, ranks)


def restore_augment_state(rng: dict[str, Any], generator: torch.Generator, seed: int, ranks: Ranks) -> None:
    """Give rank r > 0 back its own augmentation state (``restore_rng`` has given every rank
    rank 0's).

    A checkpoint of fewer processes lacks rank r's state: that rank then starts a
    fresh generator of its own seed, so no two ranks ever draw the same views."""
    if ranks.rank == 0:
        return
    saved = rng.get("augment_by_rank", [])
    if ranks.rank < len(saved):
        generator.set_state(saved[ranks.rank])
    else:
        generator.manual_seed(augment_seed(seed, ranks))
