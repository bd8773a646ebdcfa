"""SimCLR-like instance discrimination: the instance projector and NT-Xent alone.

This is CD's ``no_head`` ablation (SPEC: Table 6) as a method of its own, and the instance
branch that CD and CLD build on: for the same settings ``simclr`` and CD with ``head: false``
build the same layers in the same order and compute the same loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cdrepro.losses import instance_loss
from cdrepro.methods.base import BACKBONE_STAGE, Method, MethodSettings, Outputs, Stage

PROJECTOR_STAGE = "projector"
"""The instance branch's last stage: K-means on the projector's output z (SimCLR's final stage,
and CD's without its feature predictor)."""


def instance_projector(rep_dim: int, hidden_dim: int) -> nn.Sequential:
    """g: Linear(rep_dim, rep_dim, no bias) -> BatchNorm1d -> ReLU -> Linear(rep_dim, hidden_dim)."""
    return nn.Sequential(
        nn.Linear(rep_dim, rep_dim, bias=False),
        nn.BatchNorm1d(rep_dim),
        nn.ReLU(inplace=True),
        nn.Linear(rep_dim, hidden_dim),
    )


class SimCLR(Method):
    name = "simclr"
    label = "SimCLR"
    gathered: ClassVar[tuple[str, ...]] = ("z",)  # as Method's: subclasses gather more outputs

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__(settings, num_classes)
        self.instance_projector = instance_projector(settings.rep_dim, settings.hidden_dim)

    def heads(self, h: torch.Tensor) -> Outputs:
        return {"z": self.instance_projector(h)}  # (B, hidden_dim)

    def term_names(self) -> tuple[str, ...]:
        return ("instance",)

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        instance = instance_loss(out1["z"], out2["z"], self.settings.instance_temperature)
        return {"instance": instance, "loss": instance}

    def stages(self) -> dict[str, Stage]:
        return {BACKBONE_STAGE: Stage("h"), PROJECTOR_STAGE: Stage("z")}
