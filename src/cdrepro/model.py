"""Backbone f, instance projector g and feature predictor p of CD (SPEC: Method)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, conv1x1

BACKBONES = {"resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50}
BASIC_BLOCK_LAYOUT = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
TORCHVISION_WIDTH = 64


class Outputs(NamedTuple):
    h: torch.Tensor  # (B, rep_dim) backbone
    z: torch.Tensor  # (B, hidden_dim) instance projector
    f: torch.Tensor | None  # (B, K) feature predictor, None without a head


def make_backbone(name: str, width: int = TORCHVISION_WIDTH) -> nn.Module:
    """ImageNet-style ResNet (7x7 stride-2 stem + max-pool), random init, no fc.

    At width 64 this is torchvision's own model. Other widths build the same layout from
    torchvision's BasicBlock with widths (w, 2w, 4w, 8w): the embedded profile uses a narrow
    ResNet-18 so that it trains on two CPU cores in minutes.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    if width == TORCHVISION_WIDTH:
        resnet = BACKBONES[name](weights=None)
        resnet.fc = nn.Identity()
        return resnet
    if name not in BASIC_BLOCK_LAYOUT:
        raise ValueError(f"model.backbone_width {width} is only supported for "
                         f"{' and '.join(BASIC_BLOCK_LAYOUT)} (use 64 for {name})")
    return _narrow_resnet(BASIC_BLOCK_LAYOUT[name], width)


def _narrow_resnet(blocks: tuple[int, ...], width: int) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    ]
    in_planes = width
    for stage, n_blocks in enumerate(blocks):
        planes, stride = width * 2**stage, (1 if stage == 0 else 2)
        for block in range(n_blocks):
            downsample = None
            if block == 0 and (stride != 1 or in_planes != planes):
                downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
            layers.append(BasicBlock(in_planes, planes, stride if block == 0 else 1, downsample))
            in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def instance_projector(rep_dim: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(rep_dim, rep_dim, bias=False),
        nn.BatchNorm1d(rep_dim),
        nn.ReLU(inplace=True),
        nn.Linear(rep_dim, hidden_dim),
    )


def feature_predictor(hidden_dim: int, rep_dim: int, feature_num: int, last_bn: bool) -> nn.Sequential:
    """K sigmoid heads; ``last_bn`` is the BatchNorm1d(K) of the paper's BN ablation."""
    layers: list[nn.Module] = [
        nn.Linear(hidden_dim, rep_dim, bias=False),
        nn.BatchNorm1d(rep_dim),
        nn.ReLU(inplace=True),
        nn.Linear(rep_dim, feature_num, bias=False),
    ]
    if last_bn:
        layers.append(nn.BatchNorm1d(feature_num))
    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class ContrastiveDisentangling(nn.Module):
    """f -> g -> p. Without a head it is the SimCLR-like instance-only model of Table 6."""

    def __init__(self, backbone: str, rep_dim: int, hidden_dim: int, feature_num: int,
                 head: bool = True, last_bn: bool = True, backbone_width: int = TORCHVISION_WIDTH) -> None:
        super().__init__()
        self.backbone = make_backbone(backbone, backbone_width)
        self.instance_projector = instance_projector(rep_dim, hidden_dim)
        self.feature_predictor = (
            feature_predictor(hidden_dim, rep_dim, feature_num, last_bn) if head else None
        )

    def forward(self, x: torch.Tensor) -> Outputs:
        h = self.backbone(x)  # (B, rep_dim)
        z = self.instance_projector(h)  # (B, hidden_dim)
        f = self.feature_predictor(z) if self.feature_predictor is not None else None  # (B, K)
        return Outputs(h, z, f)


def build_model(settings) -> ContrastiveDisentangling:
    """The model for one run's resolved settings (``cdrepro.config.RunSettings``)."""
    return ContrastiveDisentangling(
        backbone=settings.backbone,
        rep_dim=settings.rep_dim,
        hidden_dim=settings.hidden_dim,
        feature_num=settings.feature_num,
        head=settings.head,
        last_bn=settings.last_bn,
        backbone_width=settings.backbone_width,
    )
