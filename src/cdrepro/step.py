"""One training step, the same for every method: views -> forward -> gather -> loss ->
backward -> clip -> step.

``cdrepro.train``'s loop, ``bench/train_throughput.py`` and the DDP tests all call these
functions; none of them has a copy of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch

from cdrepro import augment as aug
from cdrepro import distributed as ddp
from cdrepro.device import autocast
from cdrepro.methods import Method

if TYPE_CHECKING:
    from cdrepro.run_settings import RunSettings

ViewMaker = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def run_settings_of(method: Method) -> RunSettings:
    """The run's settings the model was built with: the step reads the shared protocol (lr,
    weight decay, clipping, precision) from them, beyond what the method itself reads
    (``MethodSettings``)."""
    return cast("RunSettings", method.settings)


def augment_config(settings: RunSettings) -> aug.AugmentConfig:
    """The views' augmentation for a run: the paper's pipeline at the dataset's settings."""
    return aug.AugmentConfig(
        settings.image_size,
        settings.color_strength,
        settings.blur,
        scale=(settings.crop_min_scale, 1.0),
        flip_p=0.5 if settings.hflip else 0.0,
    )


def make_views(
    x: torch.Tensor, views: int, image_size: int, make_view: ViewMaker, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of a batch x (b, 3, H, W) in [0, 1], each (b, 3, S, S). ``views`` 1: view 1
    is the un-augmented evaluation transform (the paper's single-view ablation)."""
    view1 = aug.eval_transform(x, image_size) if views == 1 else make_view(x, generator)
    view2 = make_view(x, generator)
    return view1, view2


def make_optimizer(method: Method, fused: bool = False) -> torch.optim.Adam:
    """Adam at the run's lr and weight decay (the shared protocol); ``fused`` on a GPU."""
    settings = run_settings_of(method)
    return torch.optim.Adam(method.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)


def train_step(
    method: Method,
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    view1: torch.Tensor,
    view2: torch.Tensor,
    precision: str | None = None,
) -> dict[str, torch.Tensor]:
    """One optimizer step on a batch's two views; returns the loss terms (``loss``: the total).

    ``method`` is the unwrapped model (its loss, its parameters); ``forward`` calls it, wrapped
    for DDP or compiled as the run sets up. ``precision`` overrides the run's (benchmarks)."""
    settings = run_settings_of(method)
    with autocast(view1.device, precision or settings.precision):
        # Two passes, not one over 2B images: BatchNorm sees each view's own statistics, as in
        # the authors' code. Under DDP the losses see every rank's rows: (B_global, ...).
        out1 = ddp.gather_outputs(forward(view1), method.gathered)
        out2 = ddp.gather_outputs(forward(view2), method.gathered)
        terms = method.checked_terms(method.loss(out1, out2))
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if settings.grad_clip:
        torch.nn.utils.clip_grad_norm_(method.parameters(), max_norm=settings.grad_clip_norm)
    optimizer.step()
    return terms
