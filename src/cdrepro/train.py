"""Train one CD run: the loop, its checkpoint every epoch, and resume.

The prepared uint8 images live on the training device; each step indexes a batch and makes
both views there (``cdrepro.augment``), so no per-image work happens on the host.

Under torchrun (``cdrepro.distributed``) every process runs this same loop on its slice of each
global batch; the losses see the gathered global batch, and rank 0 alone writes and reports.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cdrepro import augment as aug
from cdrepro import distributed as ddp
from cdrepro.atomic import write_json, write_text
from cdrepro.checkpoint import restore_rng, resume_or_set_aside, rng_state, save_state
from cdrepro.config import RunSettings
from cdrepro.data.prepared import load_prepared
from cdrepro.device import autocast, select_device
from cdrepro.losses import feature_loss, instance_loss, normalized_entropy
from cdrepro.model import Outputs, build_model
from cdrepro.tracking import OFF, Tracker

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "lr", "loss", "instance", "feature", "entropy", "seconds", "pairs_per_s"]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunFiles:
    checkpoint: Path
    model: Path
    curves: Path
    summary: Path


def loss_terms(out1: Outputs, out2: Outputs, s: RunSettings) -> dict[str, torch.Tensor]:
    """The CD objective and its parts for one step; switches decide which parts count."""
    terms = {"instance": instance_loss(out1.z, out2.z, s.instance_temperature)}
    total = terms["instance"]
    if s.head:
        terms["feature"] = feature_loss(out1.f, out2.f, s.feature_temperature)
        total = total + terms["feature"]
        # Logged even when switched off: the curves then show what NE does on its own.
        terms["entropy"] = normalized_entropy(out1.f, out2.f)
        if s.entropy:
            total = total - s.entropy_weight * terms["entropy"]
    terms["loss"] = total
    return terms


def _curves_csv(history: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def configure_gpu(deterministic: bool) -> None:
    """cuDNN autotuning for speed (shapes are fixed for the whole run), or deterministic kernels.

    Determinism is for debugging: the same seed then gives the same weights on the same GPU,
    at some cost in speed. The CPU path is deterministic without any of this."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this when first used.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel warns (naming itself) instead of failing.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def train(settings: RunSettings, prepared: Path, files: RunFiles, threads: int | None = None,
          progress: bool | None = None, tracker: Tracker = OFF,
          ranks: ddp.Ranks = ddp.SINGLE) -> dict[str, Any]:
    """Train (or resume) one run to ``settings.epochs`` and write its model and curves.

    ``tracker`` (cdrepro.tracking) gets the run's state once and each epoch's curve row; it
    never raises, and nothing here reads from it. ``ranks``: this process's place in a DDP run
    (inside ``cdrepro.distributed.process_group``); every rank must call train()."""
    if threads:
        torch.set_num_threads(threads)
    device = ddp.rank_device(select_device(settings.device), ranks)
    data = load_prepared(prepared)
    n_images = len(data)
    if settings.batch_size > n_images:
        raise ValueError(
            f"run {settings.run_id}: batch size {settings.batch_size} is larger than the dataset "
            f"'{settings.dataset}' ({n_images} images); with drop_last no step could run. "
            f"Set that run's batch_size under runs: to at most {n_images}"
        )
    steps_per_epoch = n_images // settings.batch_size  # drop_last, as the paper
    local_batch = ddp.local_batch_size(settings.batch_size, ranks, settings.run_id)  # this rank's rows

    torch.manual_seed(settings.seed)
    images = torch.from_numpy(data.images).to(device)  # (N, H, W, 3) uint8, on the device
    model = build_model(settings)
    if ranks.distributed:
        model = ddp.sync_batchnorm(model, device)  # statistics over the global batch, per view
    model = model.to(device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        configure_gpu(settings.deterministic)
        # Channels-last is the layout the tensor cores' convolution kernels want.
        model = model.to(memory_format=torch.channels_last)
    # ``model`` stays unwrapped: its state_dict keys are the same with one process or many.
    forward = ddp.data_parallel(model, ranks)
    if on_gpu and settings.compile in ("model", "all"):
        forward = torch.compile(forward)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                                 fused=on_gpu)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
                 if settings.schedule else None)
    shuffle_gen = torch.Generator().manual_seed(settings.seed)
    augment_gen = torch.Generator(device=device).manual_seed(ddp.augment_seed(settings.seed, ranks))
    make_view = aug.view_maker(
        aug.AugmentConfig(settings.image_size, settings.color_strength, settings.blur,
                          scale=(settings.crop_min_scale, 1.0)),
        compile=on_gpu and settings.compile in ("augment", "all"))

    history: list[dict[str, float]] = []
    start_epoch = 0
    digest = settings.digest()
    # Rank 0 first: it may set a stale checkpoint aside before the others look.
    state = ddp.main_first(ranks, lambda: resume_or_set_aside(files.checkpoint, digest))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], shuffle_gen, augment_gen)
        ddp.restore_augment_state(state["rng"], augment_gen, settings.seed, ranks)
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        log.info("%s: resuming from %s at epoch %d", settings.run_id, files.checkpoint, start_epoch)
    tracker.start(history)

    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(range(start_epoch, settings.epochs), initial=start_epoch, total=settings.epochs,
               desc=settings.run_id, unit="epoch", disable=not (progress and ranks.is_main))
    for epoch in bar:
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_images, generator=shuffle_gen).to(device)
        sums: dict[str, torch.Tensor] = {}
        # The first step (0-based) whose loss was not finite, or steps_per_epoch if none was:
        # kept on the device and read once, at the end of the epoch (no host sync per step).
        first_bad = torch.tensor(steps_per_epoch, device=device)
        for step in range(steps_per_epoch):
            first = step * settings.batch_size + ranks.rank * local_batch  # this rank's slice
            index = order[first:first + local_batch]
            x = aug.to_float(images[index])  # (b, 3, H, W) in [0, 1], b = B / world size
            if settings.views == 1:
                view1 = aug.eval_transform(x, settings.image_size)  # (b, 3, S, S) un-augmented
            else:
                view1 = make_view(x, augment_gen)
            view2 = make_view(x, augment_gen)
            with autocast(device, settings.precision):
                # Two passes, not one over 2B images: BatchNorm sees each view's own statistics,
                # as in the authors' code. Under DDP the losses see every rank's rows (B, d).
                out1, out2 = ddp.gather_outputs(forward(view1)), ddp.gather_outputs(forward(view2))
                terms = loss_terms(out1, out2, settings)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=settings.grad_clip_norm)
            optimizer.step()
            for name, value in terms.items():  # accumulate on the device: no host sync per step
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            bad_here = torch.where(torch.isfinite(terms["loss"].detach()), steps_per_epoch, step)
            first_bad = torch.minimum(first_bad, bad_here)
        bad_step = int(ddp.min_over_ranks(first_bad))  # every rank stops at the same step
        if bad_step < steps_per_epoch:
            # Raised before anything of this epoch is saved: the weights after a bad step
            # never reach the checkpoint, which stays at the last good epoch.
            kept = (f"The last good checkpoint (epoch {history[-1]['epoch']}) is kept at {files.checkpoint}"
                    if history else "No checkpoint had been written yet")
            raise NonFiniteLoss(
                f"run {settings.run_id}: loss is not finite in epoch {epoch + 1}, step {bad_step + 1} "
                f"of {steps_per_epoch} (global step {epoch * steps_per_epoch + bad_step + 1}); "
                f"stopped. {kept}"
            )
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "lr": lr, "seconds": round(seconds, 3),
               "pairs_per_s": round(steps_per_epoch * settings.batch_size / seconds, 2)}
        row.update({name: float(total) / steps_per_epoch for name, total in sums.items()})
        history.append(row)
        # Every rank takes part: the checkpoint keeps each rank's augmentation state.
        rng = rng_state(shuffle_gen, augment_gen) | ddp.augment_states(augment_gen, ranks)
        if not ranks.is_main:
            continue  # rank 0 alone writes and reports
        save_state(files.checkpoint, {
            "settings_digest": digest,
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "rng": rng,
            "history": history,
        })
        write_text(files.curves, _curves_csv(history))
        tracker.log_epoch(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
        if not progress:
            log.info("%s epoch %d/%d loss %.4f (%.1f s, %.0f pairs/s)", settings.run_id,
                     epoch + 1, settings.epochs, row["loss"], seconds, row["pairs_per_s"])

    summary = {
        "run_id": settings.run_id,
        "settings": settings.to_dict(),
        "settings_digest": digest,
        "device": str(device),
        "processes": ranks.world_size,
        "torch": torch.__version__,
        "n_images": n_images,
        "steps_per_epoch": steps_per_epoch,
        "epochs": settings.epochs,
        "final": history[-1] if history else {},
        "train_seconds": round(sum(r["seconds"] for r in history), 2),
    }
    if ranks.is_main:
        save_state(files.model, {"settings": settings.to_dict(), "settings_digest": digest,
                                 "model": model.state_dict()})
        write_text(files.curves, _curves_csv(history))
        write_json(files.summary, summary)
    return summary
