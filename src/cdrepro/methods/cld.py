"""Cross-Level Discrimination (Wang, Liu, Yu; CVPR 2021; METHODS.md: CLD): SimCLR's instance
branch plus a group branch whose features are grouped by K-means every step, each instance of
one view having to pick the other view's centroid of its group.

The instance branch is SimCLR's: the same projector, built first, so from the same seed it starts
where SimCLR's does. The group head reads h directly, as the authors' ``groupDis`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cdrepro.losses import cross_level_loss
from cdrepro.methods.base import BACKBONE_STAGE, MethodSettings, Outputs, Stage
from cdrepro.methods.options import choice, count, temperature, weight, width
from cdrepro.methods.simclr import PROJECTOR_STAGE, SimCLR

GROUP_STAGE = "group"
"""CLD's final stage: K-means on the group branch's output g."""


class NormedLinear(nn.Module):
    """y = normalize(x) @ normalize(W, dim=0): the cosine of x with each of W's columns; W is
    (in, out) and there is no bias. The authors' MoCo+CLD layer (``--normlinear``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))  # (in, out)
        # The authors' init: uniform(-1, 1), then every column scaled to norm 1. The forward
        # pass ignores the scale, but Adam's steps are relative to it.
        with torch.no_grad():
            self.weight.uniform_(-1, 1)
            self.weight.div_(self.weight.norm(dim=0, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)  # (B, out)


def group_head(kind: str, rep_dim: int, group_dim: int) -> nn.Module:
    """The group branch's one layer: ``normed_linear`` (MoCo scripts) or ``linear`` (NPID)."""
    if kind == "normed_linear":
        return NormedLinear(rep_dim, group_dim)
    if kind == "linear":
        return nn.Linear(rep_dim, group_dim)
    raise ValueError(f"cld: unknown group_head '{kind}' (normed_linear or linear)")


def one_group_problem(groups: int | str) -> str | None:
    """Why one group is refused, or None: every instance then picks the one centroid, so the
    cross-level loss is exactly 0, the group head never trains, and CLD is SimCLR."""
    if groups == 1:
        return (
            "cld option groups gives K = 1 group: every instance picks its one centroid, so "
            "the group loss is exactly 0 and CLD reduces to SimCLR; use method simclr, or "
            "groups of at least 2"
        )
    return None


def groups_problem(groups: int, batch_size: int) -> str | None:
    """Why K groups cannot split a batch of B (K >= B leaves a group per instance: instance
    discrimination again), or None."""
    if groups < batch_size:
        return None
    return (
        f"cld option groups gives K = {groups} groups for a batch of {batch_size} (the run's "
        f"batch_size); K must be smaller than the batch (K >= B degenerates into instance "
        f"discrimination): use groups: half_batch (K = {batch_size // 2}) or a number below {batch_size}"
    )


class CrossLevelDiscrimination(SimCLR):
    name = "cld"
    label = "CLD"
    # K-means runs on the global batch, so 1 process and 2 group the same rows the same way.
    gathered = ("z", "g")
    options = {
        "groups": width(
            "half_batch",
            "K, groups per step, smaller than the batch; half_batch = B // 2 "
            "(ours; the authors' CIFAR-10 scripts: 128 at B 256 with NPID, "
            "200 with MoCo)",
        ),
        "group_temperature": temperature(0.2, "tau_G of the cross-level loss (the authors' scripts: 0.2)"),
        "group_weight": weight(1.0, "lambda: loss = instance + lambda * group"),
        "kmeans_iterations": count(5, "Lloyd iterations of the per-step K-means (scripts: 5)"),
        "group_dim": count(128, "width of the group features g"),
        "group_head": choice(
            "normed_linear",
            ("normed_linear", "linear"),
            "the group layer: normed_linear (MoCo scripts) or linear (NPID)",
        ),
    }
    # The authors' checkpoints are MoCo / NPID models of other backbones (a CIFAR ResNet-18,
    # encoder_q.*): none fits this architecture, so no layout is mapped.
    authors_layout = {}

    @staticmethod
    def check_options(options: Mapping[str, Any]) -> str | None:
        return one_group_problem(options["groups"])  # as written; half_batch is checked per run

    @staticmethod
    def check_run(options: Mapping[str, Any], batch_size: int) -> str | None:
        # One group is refused by validation only: the model itself can be built and trained.
        return groups_problem(options["groups"], batch_size) or one_group_problem(options["groups"])

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__(settings, num_classes)
        o = settings.options
        problem = groups_problem(o["groups"], settings.batch_size)  # validate says so earlier
        if problem:
            raise ValueError(problem)
        self.groups = o["groups"]
        self.group_head = group_head(o["group_head"], settings.rep_dim, o["group_dim"])

    def heads(self, h: torch.Tensor) -> Outputs:
        out = super().heads(h)  # z: (B, hidden_dim)
        out["g"] = F.normalize(self.group_head(h), dim=1)  # (B, group_dim), unit rows
        return out

    def term_names(self) -> tuple[str, ...]:
        return ("instance", "group")

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        o = self.settings.options
        terms = super().loss(out1, out2)
        terms["group"] = cross_level_loss(
            out1["g"], out2["g"], self.groups, o["group_temperature"], o["kmeans_iterations"]
        )
        terms["loss"] = terms["instance"] + o["group_weight"] * terms["group"]
        return terms

    def stages(self) -> dict[str, Stage]:
        # The instance projection z is a stage too: CLD's own kNN numbers are measured on it
        # (the authors' ``test.py`` reads the 128-d normalised projection), so ours are read there
        # as well as on g, the group branch, which stays the final stage.
        return {BACKBONE_STAGE: Stage("h"), PROJECTOR_STAGE: Stage("z"), GROUP_STAGE: Stage("g")}
