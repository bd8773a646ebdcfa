"""Choosing the compute device and numeric precision from the params."""

from __future__ import annotations

import contextlib

import torch

from cdrepro.gpu_slots import check_cuda_sees_its_gpus


class DeviceUnavailable(RuntimeError):
    """The params demand a device this machine does not have."""


def select_device(name: str) -> torch.device:
    """``auto`` takes CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if name == "auto":
        return select_device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            "train.device is 'cuda' but no CUDA GPU is visible (torch.cuda.is_available() is "
            "False); set train.device to 'auto' or 'cpu', or run on a GPU machine"
        )
    device = torch.device(name)
    if device.type == "cuda":
        check_cuda_sees_its_gpus()
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA unless fp32 is asked for; plain fp32 on CPU (bf16 is slow there)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
