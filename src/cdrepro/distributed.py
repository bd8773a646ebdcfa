"""One run on several processes (DDP): the process group, each rank's place, and gathering
across ranks with gradients, so that train.py reads the same with one process or many.

How a run is split
    ``settings.batch_size`` stays the global batch, the paper's. Every rank draws the same
    shuffle permutation and takes its contiguous slice of each global batch (rank 0 the first
    ``batch_size / world_size`` rows, and so on), makes its own views with its own augmentation
    generator, and runs the model on them. Before the losses, the outputs the method's losses
    read (its ``gathered`` names: CD's z and f, say) are gathered from every rank
    (``gather_outputs``), in rank order, so the losses see the global batch in the order one
    process would have it.

Why the gradient comes out right
    Every rank computes the same global loss L from the same gathered tensors. The backward of
    ``all_gather_with_grad`` sums, over ranks, the gradient of each rank's copy of L with
    respect to this rank's rows: W times dL/d(own rows), for W ranks. DDP then averages the
    parameter gradients over the W ranks. W / W = 1: the gradient equals the single-process
    gradient of L at the same global batch. SyncBatchNorm follows the same convention (its
    backward sums the upstream gradients of every rank), so the two compose.
    ``tests/test_distributed.py`` checks loss and every parameter gradient against one process.

Without ``WORLD_SIZE`` > 1 in the environment nothing here communicates and every function
returns its input: the single-process path is the plain one.

Elsewhere: starting the processes and telling their failures is ``cdrepro.launcher``; each
rank's augmentation seed and random state in the checkpoint are ``cdrepro.random_state``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes training one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, talks to the tracker and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def world_size_from_env() -> int | None:
    """The number of processes torchrun (or another launcher) started, or None outside one."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: torch.device, backend: str | None = None) -> Iterator[Ranks]:
    """Join the run's process group for the duration of the block; yield this process's Ranks.

    Reads the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``, as torchrun sets them). Outside a launcher, or with a
    world of one, yields SINGLE and starts nothing. On CUDA each rank takes the GPU of its
    local rank. ``backend``: nccl on CUDA, gloo on the CPU unless given.
    """
    world_size = world_size_from_env() or 1
    if world_size == 1:
        yield SINGLE
        return
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if ranks.local_rank >= visible:
            raise RuntimeError(
                f"{world_size} training processes on this node but only {visible} CUDA GPU(s) "
                f"visible: local rank {ranks.local_rank} has none. Set train.gpus_per_run (or "
                "torchrun's --nproc-per-node) to at most the GPUs the job was given"
            )
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(
        backend or backend_for(device), rank=ranks.rank, world_size=world_size, timeout=datetime.timedelta(minutes=30)
    )
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """This rank's GPU (its local rank) on CUDA under DDP; ``device`` unchanged otherwise."""
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return device


def local_batch_size(batch_size: int, ranks: Ranks, run_id: str) -> int:
    """Each rank's share of the global batch; the global batch must split evenly."""
    if batch_size % ranks.world_size:
        raise ValueError(
            f"run {run_id}: the global batch size {batch_size} (the run's batch_size under runs:) "
            f"does not divide among {ranks.world_size} processes (train.gpus_per_run, or "
            "torchrun's --nproc-per-node); choose a number of processes that divides it"
        )
    return batch_size // ranks.world_size


# --------------------------------------------------------------------------- gathering


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient of this rank's rows."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (W n, ...)
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # (W n, ...) -> (n, ...)
        # A copy: the all-reduce works in place, and autograd may hold on to ``grad``.
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)  # sum over ranks: every rank's loss used these rows
        return total.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


def all_gather_with_grad(rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` stacked in rank order, differentiable: (n, ...) -> (W n, ...).

    The gradient reaching this rank's ``rows`` is the sum over ranks of the gradient of each
    rank's use of the gathered tensor (see the module docstring for why that is the right
    factor under DDP). Every rank must pass the same shape. Outside a process group (or with
    one process) returns ``rows`` itself.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return rows
    return _AllGatherWithGrad.apply(rows)


def gather_outputs(out: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The outputs named in ``names`` over the global batch, gathered with gradients; the others
    (h, say) stay this rank's own rows: the losses do not read them."""
    return {
        key: all_gather_with_grad(value) if key in names else value  # (B_global, ...)
        for key, value in out.items()
    }


def min_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The smallest of every rank's ``value`` (one collective); ``value`` itself in one process.

    The step a non-finite loss first appeared is agreed this way, so every rank stops at the
    same step even if the ranks' arithmetic were ever to differ."""
    if not dist.is_initialized():
        return value
    smallest = value.clone()
    dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    return smallest


# --------------------------------------------------------------------------- the model


class CpuSyncBatchNorm(_BatchNorm):
    """BatchNorm whose statistics span every rank's rows, for CPU tensors (the gloo backend):
    torch's SyncBatchNorm has CUDA kernels only, and DDP refuses it on the CPU.

    Same parameters and buffers as BatchNorm, same statistics as torch's SyncBatchNorm: per
    channel, over the rows of every rank, the variance biased for normalising and unbiased for
    the running estimate. Gradients flow back through the gathered per-rank statistics, with
    torch's convention (each rank's backward sums the upstream gradients of every rank).
    Outside training or a process group it is plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        axes = [0, *range(2, x.dim())]  # every axis but the channels
        per_channel = (1, -1) + (1,) * (x.dim() - 2)
        local_count = x.numel() // x.shape[1]  # the same on every rank
        count = local_count * dist.get_world_size()
        # Each rank's mean and sum of squared deviations, merged exactly (Chan et al.): one
        # collective, and none of the cancellation of sum(x^2) - n mean^2.
        local_mean = x.mean(axes)  # (C,)
        local_m2 = (x - local_mean.reshape(per_channel)).square().sum(axes)  # (C,)
        means, m2s = all_gather_with_grad(torch.stack([local_mean, local_m2])[None]).unbind(1)  # (W, C) each
        mean = means.mean(0)  # (C,)
        var = (m2s.sum(0) + local_count * (means - mean).square().sum(0)) / count  # (C,) biased
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / max(count - 1, 1))
        out = (x - mean.reshape(per_channel)) * torch.rsqrt(var + self.eps).reshape(per_channel)
        if self.affine:
            out = out * self.weight.reshape(per_channel) + self.bias.reshape(per_channel)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """BatchNorm's update: momentum, or the cumulative average when momentum is None."""
        # Called only when track_running_stats, so BatchNorm registered these buffers (not None).
        assert self.num_batches_tracked is not None
        assert self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked += 1
        weight = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, weight)
        self.running_var.lerp_(unbiased_var, weight)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm below ``module`` (not ``module`` itself) by one of these,
        sharing its parameters and buffers, as torch's ``convert_sync_batchnorm`` does."""
        for name, child in module.named_children():
            if not isinstance(child, _BatchNorm):
                cls.convert(child)
                continue
            synced = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(module, name, synced)
        return module


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` computing its statistics over the global batch: torch's
    SyncBatchNorm on CUDA, CpuSyncBatchNorm on the CPU. State_dict keys stay BatchNorm's."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return CpuSyncBatchNorm.convert(model)


def data_parallel(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel under DDP; ``model`` itself in one process.

    The caller keeps the unwrapped model for state_dict, so checkpoints have no ``module.``
    prefix and load the same with one process or many."""
    if not ranks.distributed:
        return model
    device = next(model.parameters()).device
    # DDP's default buffer broadcast from rank 0 stays: synced BatchNorm leaves the running
    # statistics identical on every rank anyway, so it changes nothing and costs little.
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


# --------------------------------------------------------------------------- ordering


def main_first(ranks: Ranks, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0, then on the other ranks: for a step that may change files
    (setting a stale checkpoint aside) before every rank reads them."""
    if ranks.is_main:
        result = action()
    if ranks.distributed:
        dist.barrier()
    if not ranks.is_main:
        result = action()
    return result
