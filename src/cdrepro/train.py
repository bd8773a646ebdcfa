"""Train one run of any method: the loop, its checkpoint every epoch, and resume.

The prepared uint8 images live on the training device; each step indexes a batch of the run's
training set (every image, or the train split: ``cdrepro.data.training_set``) and makes
both views there (``cdrepro.augment``), so no per-image work happens on the host. The step
itself (views -> forward -> gather -> loss -> backward -> clip -> step) is ``cdrepro.step``.

Under torchrun (``cdrepro.launcher``; ``cdrepro.distributed``) every process runs this same
loop on its slice of each global batch; the losses see the gathered global batch, and rank 0
alone writes and reports.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from tqdm import tqdm

from cdrepro import augment as aug
from cdrepro import distributed as ddp
from cdrepro import random_state
from cdrepro.atomic import write_json, write_text
from cdrepro.checkpoint import resume_or_set_aside, save_state
from cdrepro.data.prepared import load_prepared
from cdrepro.data.training_set import class_counts, training_indices
from cdrepro.device import select_device
from cdrepro.identity import RunIdentity
from cdrepro.methods import Method, build_method
from cdrepro.run_settings import RunSettings
from cdrepro.step import ViewMaker, augment_config, make_optimizer, make_views, train_step

log = logging.getLogger(__name__)

# curves.csv: these columns around the method's own loss terms (Method.term_names()).
LEADING_COLUMNS = ("epoch", "lr", "loss")
TRAILING_COLUMNS = ("seconds", "pairs_per_s")

# The devices on which train.compile takes effect. On the CPU compiling costs more than it saves
# at these sizes; a test adds "cpu" to meet a method's compile errors before a GPU machine does.
COMPILE_DEVICES: tuple[str, ...] = ("cuda",)


def curve_columns(method: Method) -> list[str]:
    return [*LEADING_COLUMNS, *method.term_names(), *TRAILING_COLUMNS]


class EpochSink(Protocol):
    """Where the loop reports (rank 0 only); ``cdrepro.tracking.Tracker`` is the MLflow one.
    It must never raise into training."""

    def start(self, history: list[dict[str, float]]) -> None: ...

    def log_epoch(self, row: dict[str, float]) -> None: ...


class _NoSink:
    def start(self, history: list[dict[str, float]]) -> None:
        pass

    def log_epoch(self, row: dict[str, float]) -> None:
        pass


NO_SINK = _NoSink()


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunFiles:
    checkpoint: Path
    model: Path
    curves: Path
    summary: Path


def _curves_csv(history: list[dict[str, float]], columns: list[str]) -> str:
    buffer = io.StringIO()
    # extrasaction="raise": a loss term without a column is an error, never a silent drop.
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", restval="")
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


@dataclass
class Session:
    """One process's training state for one run, built by ``setup``."""

    settings: RunSettings
    identity: RunIdentity  # what the checkpoint and model must match: settings and data
    ranks: ddp.Ranks
    device: torch.device
    images: torch.Tensor  # (N, H, W, 3) uint8, on the device: every image of the dataset
    indices: torch.Tensor  # (n,) int64 on the device: the images trained on (training_set)
    class_counts: list[int]  # images per class trained on, with repeats
    method: Method  # unwrapped: its state_dict keys are the same with one process or many
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]]  # DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    shuffle_gen: torch.Generator
    augment_gen: torch.Generator
    make_view: ViewMaker
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0

    @property
    def n_images(self) -> int:
        return len(self.indices)

    @property
    def steps_per_epoch(self) -> int:
        return self.n_images // self.settings.batch_size  # drop_last, as the paper

    @property
    def local_batch(self) -> int:
        return self.settings.batch_size // self.ranks.world_size  # this rank's rows of a batch


def setup(settings: RunSettings, prepared: Path, ranks: ddp.Ranks) -> Session:
    """Data on the device, the seeded model, optimizer, schedule and generators of a run."""
    device = ddp.rank_device(select_device(settings.device), ranks)
    data = load_prepared(prepared)
    indices = training_indices(data, settings.training_set)  # (n,) into data.images
    if settings.batch_size > indices.size:
        trained_on = "" if settings.training_set is None else " to train on"
        raise ValueError(
            f"run {settings.run_id}: batch size {settings.batch_size} is larger than the dataset "
            f"'{settings.dataset}' ({indices.size} images{trained_on}); with drop_last no step could run. "
            f"Set that run's batch_size under runs: to at most {indices.size}"
        )
    ddp.local_batch_size(settings.batch_size, ranks, settings.run_id)  # says if it does not split

    torch.manual_seed(settings.seed)
    images = torch.from_numpy(data.images).to(device)
    method = build_method(settings, data.num_classes)
    if ranks.distributed:
        # Statistics over the global batch, per view. The BatchNorms below the method are
        # replaced, not the method itself: it comes back, still a Method.
        method = cast(Method, ddp.sync_batchnorm(method, device))
    method = method.to(device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        configure_gpu(settings.deterministic)
        # Channels-last is the layout the tensor cores' convolution kernels want.
        method = method.to(memory_format=torch.channels_last)
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]] = ddp.data_parallel(method, ranks)
    compiling = device.type in COMPILE_DEVICES
    if compiling and settings.compile in ("model", "all"):
        forward = torch.compile(forward)
    optimizer = make_optimizer(method, fused=on_gpu)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs) if settings.schedule else None
    )
    shuffle_gen = torch.Generator().manual_seed(settings.seed)
    augment_gen = torch.Generator(device=device).manual_seed(random_state.augment_seed(settings.seed, ranks))
    make_view = aug.view_maker(augment_config(settings), compile=compiling and settings.compile in ("augment", "all"))
    identity = RunIdentity(settings.digest(), data.digest)
    return Session(
        settings,
        identity,
        ranks,
        device,
        images,
        torch.from_numpy(indices).to(device),
        class_counts(data, indices),
        method,
        forward,
        optimizer,
        scheduler,
        shuffle_gen,
        augment_gen,
        make_view,
    )


def resume(session: Session, checkpoint: Path) -> None:
    """Continue from the run's checkpoint when it has one for these settings."""
    s = session
    # Rank 0 first: it may set a stale checkpoint aside before the others look.
    state = ddp.main_first(s.ranks, lambda: resume_or_set_aside(checkpoint, s.identity))
    if state is None:
        return
    s.method.load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    if s.scheduler is not None:
        s.scheduler.load_state_dict(state["scheduler"])
    random_state.restore_rng(state["rng"], s.shuffle_gen, s.augment_gen, s.settings.seed, s.ranks)
    s.history = list(state["history"])
    s.start_epoch = int(state["epoch"])
    log.info("%s: resuming from %s at epoch %d", s.settings.run_id, checkpoint, s.start_epoch)


def run_epoch(session: Session, epoch: int, checkpoint: Path) -> dict[str, float]:
    """One pass over the shuffled data; the epoch's curve row. NonFiniteLoss if a step's loss
    was not finite (``checkpoint``: named in that message)."""
    s, settings = session, session.settings
    s.method.train()
    s.method.on_epoch_start(epoch)
    started = time.perf_counter()
    order = s.indices[torch.randperm(s.n_images, generator=s.shuffle_gen).to(s.device)]  # (n,) image indices
    sums: dict[str, torch.Tensor] = {}
    # The first step (0-based) whose loss was not finite, or steps_per_epoch if none was:
    # kept on the device and read once, at the end of the epoch (no host sync per step).
    first_bad = torch.tensor(s.steps_per_epoch, device=s.device)
    for step in range(s.steps_per_epoch):
        first = step * settings.batch_size + s.ranks.rank * s.local_batch  # this rank's slice
        x = aug.to_float(s.images[order[first : first + s.local_batch]])  # (b, 3, H, W) in [0, 1]
        view1, view2 = make_views(x, settings.views, settings.image_size, s.make_view, s.augment_gen)
        terms = train_step(s.method, s.forward, s.optimizer, view1, view2)
        for name, value in terms.items():  # accumulate on the device: no host sync per step
            sums[name] = sums.get(name, 0.0) + value.detach().float()
        bad_here = torch.where(torch.isfinite(terms["loss"].detach()), s.steps_per_epoch, step)
        first_bad = torch.minimum(first_bad, bad_here)
    bad_step = int(ddp.min_over_ranks(first_bad))  # every rank stops at the same step
    if bad_step < s.steps_per_epoch:
        # Raised before anything of this epoch is saved: the weights after a bad step never
        # reach the checkpoint, which stays at the last good epoch.
        kept = (
            f"The last good checkpoint (epoch {s.history[-1]['epoch']}) is kept at {checkpoint}"
            if s.history
            else "No checkpoint had been written yet"
        )
        raise NonFiniteLoss(
            f"run {settings.run_id}: loss is not finite in epoch {epoch + 1}, step {bad_step + 1} "
            f"of {s.steps_per_epoch} (global step {epoch * s.steps_per_epoch + bad_step + 1}); "
            f"stopped. {kept}"
        )
    lr = s.optimizer.param_groups[0]["lr"]
    if s.scheduler is not None:
        s.scheduler.step()
    seconds = time.perf_counter() - started
    row = {
        "epoch": epoch + 1,
        "lr": lr,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(s.steps_per_epoch * settings.batch_size / seconds, 2),
    }
    row.update({name: float(total) / s.steps_per_epoch for name, total in sums.items()})
    return row


def write_epoch(session: Session, files: RunFiles, rng: dict[str, Any]) -> None:
    """The checkpoint (everything resume needs) and the curves so far; rank 0 only."""
    s = session
    save_state(
        files.checkpoint,
        {
            **s.identity.fields(),
            "epoch": s.history[-1]["epoch"],
            "model": s.method.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else {},
            "rng": rng,
            "history": s.history,
        },
    )
    write_text(files.curves, _curves_csv(s.history, curve_columns(s.method)))


def finish(session: Session, files: RunFiles) -> dict[str, Any]:
    """The run's summary; rank 0 also writes the final model, curves and train.json."""
    s = session
    summary = {
        "run_id": s.settings.run_id,
        "method": s.settings.method,
        "settings": s.settings.to_dict(),
        **s.identity.fields(),
        "device": str(s.device),
        "processes": s.ranks.world_size,
        "torch": torch.__version__,
        "n_images": s.n_images,
        "class_counts": s.class_counts,
        "steps_per_epoch": s.steps_per_epoch,
        "epochs": s.settings.epochs,
        "final": s.history[-1] if s.history else {},
        "train_seconds": round(sum(r["seconds"] for r in s.history), 2),
    }
    if s.ranks.is_main:
        save_state(
            files.model, {"settings": s.settings.to_dict(), **s.identity.fields(), "model": s.method.state_dict()}
        )
        write_text(files.curves, _curves_csv(s.history, curve_columns(s.method)))
        write_json(files.summary, summary)
    return summary


def train(
    settings: RunSettings,
    prepared: Path,
    files: RunFiles,
    threads: int | None = None,
    progress: bool | None = None,
    sink: EpochSink = NO_SINK,
    ranks: ddp.Ranks = ddp.SINGLE,
) -> dict[str, Any]:
    """Train (or resume) one run to ``settings.epochs`` and write its model and curves.

    ``sink`` gets the run's history once and each epoch's curve row (rank 0). ``ranks``: this
    process's place in a DDP run (inside ``cdrepro.distributed.process_group``); every rank
    must call train()."""
    if threads:
        torch.set_num_threads(threads)
    session = setup(settings, prepared, ranks)
    resume(session, files.checkpoint)
    sink.start(session.history)
    show = (sys.stderr.isatty() if progress is None else progress) and ranks.is_main
    bar = tqdm(
        range(session.start_epoch, settings.epochs),
        initial=session.start_epoch,
        total=settings.epochs,
        desc=settings.run_id,
        unit="epoch",
        disable=not show,
    )
    for epoch in bar:
        row = run_epoch(session, epoch, files.checkpoint)
        session.history.append(row)
        # Every rank takes part: the checkpoint keeps each rank's augmentation state.
        rng = random_state.rng_state(session.shuffle_gen, session.augment_gen, ranks)
        if not ranks.is_main:
            continue  # rank 0 alone writes and reports
        write_epoch(session, files, rng)
        sink.log_epoch(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
        if not show:
            log.info(
                "%s epoch %d/%d loss %.4f (%.1f s, %.0f pairs/s)",
                settings.run_id,
                epoch + 1,
                settings.epochs,
                row["loss"],
                row["seconds"],
                row["pairs_per_s"],
            )
    return finish(session, files)
