"""Does running several trainings at once on one GPU raise the total pairs/s? One process of a
probe of N (``--rank``); bench/quick_session.py starts them all and merges their JSON.

Each process sets up every run of ``--params`` as ``cdrepro train`` does (``cdrepro.train.setup``:
the same model, optimizer, channels-last, compiled augmentation) on random images of the run's
size, then for each packing factor p of ``--packs``: the processes of rank < p time each run's
real training step (index, both views, forward, loss, backward, clip, step, the epoch's sums)
for ``--seconds`` at the same moment (file barriers in ``--sync-dir``), while the others wait.
So p processes share the GPU exactly while they are timed.

Rank 0 also measures, alone (p = 1), what bounds the step (``--anatomy``): each run's model step
on fixed views (model only) and the input path alone (augment only), a profile of a few steps
(kernels per step, GPU time per step), the step's FLOPs, and the device's ceilings (a bf16
matrix product, a device-to-device copy). The JSON is rewritten after every packing factor, so
a probe stopped at its deadline keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdrepro import augment as aug
from cdrepro import config as cfg
from cdrepro import distributed as ddp
from cdrepro import run_settings as rs
from cdrepro.data.prepared import meta_path_for, save_prepared
from cdrepro.step import make_views, train_step
from cdrepro.train import Session, setup

GIB = 2**30
Step = Callable[[], torch.Tensor]


# --------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_for(seconds: float, device: torch.device, one_step: Step, batch: int) -> dict[str, float]:
    """As many steps as start within ``seconds`` (at least 2), timed to the last one's end."""
    sync(device)
    started = time.perf_counter()
    steps = 0
    while steps < 2 or time.perf_counter() - started < seconds:
        loss = one_step()
        steps += 1
    sync(device)
    elapsed = time.perf_counter() - started
    return {
        "steps": steps,
        "seconds": round(elapsed, 4),
        "pairs_per_s": round(steps * batch / elapsed, 1),
        "ms_per_step": round(elapsed * 1e3 / steps, 3),
        "last_loss": float(loss),
    }


def barrier(sync_dir: Path, name: str, rank: int, count: int, timeout: float) -> None:
    """Wait until ``count`` processes have reached ``name``."""
    (sync_dir / f"{name}.{rank}").touch()
    deadline = time.monotonic() + timeout
    while len(list(sync_dir.glob(f"{name}.*"))) < count:
        if any(sync_dir.glob("failed.*")):  # a peer died: its place in the barrier stays empty
            raise RuntimeError(f"rank {rank}: a peer failed ({sorted(p.name for p in sync_dir.glob('failed.*'))})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: barrier {name} not reached by {count} processes in {timeout} s")
        time.sleep(0.005)


# --------------------------------------------------------------------------- the runs' steps


def synthetic_prepared(params: dict[str, Any], rids: list[str], folder: Path) -> Path:
    """Random uint8 images at the runs' size (the step's cost does not depend on the pixels)."""
    runs = [rs.resolve_run(params, rs.find_run(params, rid)) for rid in rids]
    size, batch = runs[0].image_size, max(run.batch_size for run in runs)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch * 4, size, size, 3), dtype=np.uint8)
    npz = folder / "probe.npz"
    classes = [f"c{i}" for i in range(10)]
    save_prepared(npz, meta_path_for(npz), "probe", images, np.arange(len(images)) % 10, classes, {})
    return npz


def real_step(s: Session) -> Step:
    """One step of ``cdrepro.train.run_epoch``, cycling through one shuffled order."""
    s.method.train()
    s.method.on_epoch_start(0)
    order = torch.randperm(s.n_images, generator=s.shuffle_gen).to(s.device)
    b = s.settings.batch_size
    state: dict[str, Any] = {"at": 0, "sums": {}}

    def one() -> torch.Tensor:
        first = (state["at"] % s.steps_per_epoch) * b
        state["at"] += 1
        x = aug.to_float(s.images[order[first : first + b]])
        view1, view2 = make_views(x, s.settings.views, s.settings.image_size, s.make_view, s.augment_gen)
        terms = train_step(s.method, s.forward, s.optimizer, view1, view2)
        for name, value in terms.items():  # as run_epoch: sums on the device, no host sync
            state["sums"][name] = state["sums"].get(name, 0.0) + value.detach().float()
        return terms["loss"].detach()

    return one


def model_only_step(s: Session) -> Step:
    """The model step on two fixed views already on the device: no input path."""
    shape = (s.settings.batch_size, 3, s.settings.image_size, s.settings.image_size)
    gen = torch.Generator(device=s.device).manual_seed(0)
    view1, view2 = (torch.rand(shape, device=s.device, generator=gen) for _ in range(2))
    return lambda: train_step(s.method, s.forward, s.optimizer, view1, view2)["loss"].detach()


def augment_only_step(s: Session) -> Step:
    """The input path alone: index, to float, both views; no model."""
    b = s.settings.batch_size

    def one() -> torch.Tensor:
        x = aug.to_float(s.images[:b])
        view1, view2 = make_views(x, s.settings.views, s.settings.image_size, s.make_view, s.augment_gen)
        return view1[0, 0, 0, 0] + view2[0, 0, 0, 0]

    return one


# --------------------------------------------------------------------------- what bounds the step


def kernel_profile(device: torch.device, one_step: Step, steps: int = 5) -> dict[str, Any]:
    """Kernels per step and GPU time per step under torch.profiler (CUDA only)."""
    if device.type != "cuda":
        return {"skipped": "no GPU kernels on the CPU"}
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    one_step()
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            one_step()
        sync(device)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.time_range.elapsed_us() for e in kernels)
    source = "device events"
    if not kernels:  # a torch that keeps device time on the host ops only
        busy_us = sum(getattr(e, "self_device_time_total", 0) for e in prof.key_averages())
        source = "self_device_time_total of the host ops"
    return {
        "steps": steps,
        "kernels_per_step": round(len(kernels) / steps, 1) if kernels else None,
        "gpu_ms_per_step": round(busy_us / 1e3 / steps, 3),
        "mean_kernel_us": round(busy_us / len(kernels), 2) if kernels else None,
        "source": source,
    }


def flops_per_pair(s: Session) -> float | None:
    """FLOPs of one model step (forward and backward of both views) per image pair."""
    from torch.utils.flop_counter import FlopCounterMode

    step = model_only_step(s)
    with FlopCounterMode(display=False) as counter:
        step()
    total = counter.get_total_flops()
    return total / s.settings.batch_size if total else None


def ceilings(device: torch.device) -> dict[str, float]:
    """What this device does at best: a bf16 matrix product (TFLOP/s) and a copy (GB/s)."""
    n, copy_bytes = (8192, GIB) if device.type == "cuda" else (256, 2**24)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    src = torch.empty(copy_bytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    matmul = time_for(0.5, device, lambda: (a @ a)[0, 0], 1)
    copy = time_for(0.5, device, lambda: dst.copy_(src)[0], 1)
    return {
        "bf16_matmul_tflops": round(2 * n**3 * matmul["pairs_per_s"] / 1e12, 1),
        "copy_gb_per_s": round(2 * copy_bytes * copy["pairs_per_s"] / 1e9, 1),
        "matmul_n": n,
        "copy_bytes": copy_bytes,
    }


def guarded(measure: Callable[[], Any]) -> Any:
    """A measurement, or what stopped it: the anatomy is never worth the probe's rates."""
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 (any failure is reported, not raised)
        return {"error": f"{type(exc).__name__}: {exc}"}


def session_anatomy(s: Session, device: torch.device, seconds: float) -> dict[str, Any]:
    """One run's model-only step rate, kernel profile and FLOPs per pair."""
    return {
        "model_only": guarded(lambda: time_for(seconds, device, model_only_step(s), s.settings.batch_size)),
        "profile": guarded(lambda: kernel_profile(device, real_step(s))),
        "flops_per_pair": guarded(lambda: flops_per_pair(s)),
    }


def anatomy(sessions: dict[str, Session], seconds: float, device: torch.device) -> dict[str, Any]:
    """Rank 0, alone on the device: every run's model-only step, profile and FLOPs; the input
    path alone; the device's ceilings."""
    first = next(iter(sessions.values()))
    report: dict[str, Any] = {
        "ceilings": guarded(lambda: ceilings(device)),
        "augment_only": guarded(lambda: time_for(seconds, device, augment_only_step(first), first.settings.batch_size)),
    }
    for rid, s in sessions.items():
        report[rid] = session_anatomy(s, device, seconds)
    return report


# --------------------------------------------------------------------------- the probe


def memory(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 3),
        "device_used_gib": round((total - free) / GIB, 3),
        "device_total_gib": round(total / GIB, 3),
    }


def measure_pack(p: int, sessions: dict[str, Session], args: argparse.Namespace, device: torch.device) -> dict:
    """This rank's rates at packing factor p, every run timed at once by all p processes."""
    results = {}
    for rid, s in sessions.items():
        step = real_step(s)
        for _ in range(args.warmup):
            step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        barrier(args.sync_dir, f"p{p}-{rid}-go", args.rank, p, args.timeout)
        results[rid] = time_for(args.seconds, device, step, s.settings.batch_size) | memory(device)
        barrier(args.sync_dir, f"p{p}-{rid}-end", args.rank, p, args.timeout)
    return results


def write(report: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


def probe(args: argparse.Namespace, params: dict[str, Any], report: dict[str, Any]) -> None:
    device = torch.device(
        params["train"]["device"]
        if params["train"]["device"] != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    with tempfile.TemporaryDirectory() as folder:
        prepared = synthetic_prepared(params, args.runs, Path(folder))
        sessions = {
            rid: setup(rs.resolve_run(params, rs.find_run(params, rid)), prepared, ddp.SINGLE) for rid in args.runs
        }
    first_step_s = None
    for s in sessions.values():  # compiles the augmentation and tunes cuDNN once
        real_step(s)()
        sync(device)
        # From launch to a first step done: about a training process's start-up (cold cache).
        first_step_s = first_step_s or round(time.time() - args.launched_at, 2)
    report.update(
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        first_step_s=first_step_s,
        ready_s=round(time.time() - args.launched_at, 2),
        packs={},
    )
    barrier(args.sync_dir, "ready", args.rank, args.processes, args.timeout)
    for p in args.packs:
        if args.anatomy and args.rank == 0 and p == 1:
            report["anatomy"] = anatomy(sessions, args.seconds, device)
        if args.rank < p:
            report["packs"][str(p)] = measure_pack(p, sessions, args, device)
            write(report, args.json)
        barrier(args.sync_dir, f"p{p}-done", args.rank, args.processes, args.timeout)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", required=True)
    p.add_argument("--runs", required=True, help="comma-separated run ids of --params")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--packs", default="1,2,3", help="packing factors to time, comma-separated")
    p.add_argument("--sync-dir", required=True, type=Path, help="an empty folder shared by the probe's processes")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per run and packing factor")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing")
    p.add_argument("--anatomy", action="store_true", help="rank 0: also what bounds the step")
    p.add_argument("--launched-at", type=float, default=None, help="epoch seconds the process was started")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait at a barrier")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", required=True, type=Path)
    args = p.parse_args(argv)
    args.runs = [r for r in args.runs.split(",") if r]
    args.packs = sorted({int(x) for x in args.packs.split(",") if x})
    args.processes = max(args.packs)
    args.launched_at = args.launched_at or time.time()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = cfg.load_params(args.params)
    report: dict[str, Any] = {
        "rank": args.rank,
        "torch": torch.__version__,
        "runs": args.runs,
        "packs_asked": args.packs,
        "seconds": args.seconds,
        "warmup": args.warmup,
    }
    try:
        probe(args, params, report)
    except BaseException:
        (args.sync_dir / f"failed.{args.rank}").touch()  # the others stop waiting for this one
        raise
    finally:
        write(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
