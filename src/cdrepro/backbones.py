"""The backbones every method shares: ResNets without their fc (SPEC: Method).

Two stems: ``imagenet`` (torchvision's 7x7 stride-2 convolution + max-pool, the paper's, which
expects 224 px inputs) and ``cifar`` (3x3 stride-1 convolution, no max-pool: the usual choice for
32 px images trained at their own size, where the ImageNet stem would leave 8x8 maps after it).
"""

from __future__ import annotations

from torch import nn

# torchvision is imported where a backbone is built: importing it costs seconds (it loads
# torch._dynamo), paid by every CLI call and Snakemake start that builds no model.
BACKBONES = ("resnet18", "resnet34", "resnet50")  # torchvision.models' builders of these names
BASIC_BLOCK_LAYOUT = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
TORCHVISION_WIDTH = 64
STEMS = ("imagenet", "cifar")


def make_backbone(name: str, width: int, stem: str) -> nn.Module:
    """A ResNet with the given stem, random init, no fc (a run's ``model.backbone``,
    ``backbone_width`` and ``stem``: their defaults are the params schema's).

    At width 64 this is torchvision's own model (its stem swapped for ``cifar``). Other widths
    build the same layout from torchvision's BasicBlock with widths (w, 2w, 4w, 8w): the
    embedded profile uses a narrow ResNet-18 so that it trains on two CPU cores in minutes.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    if stem not in STEMS:
        raise ValueError(f"unknown model.stem '{stem}' (choose from {', '.join(STEMS)})")
    if width == TORCHVISION_WIDTH:
        from torchvision import models

        resnet = getattr(models, name)(weights=None)
        resnet.fc = nn.Identity()
        if stem == "cifar":
            # Same names (conv1, bn1, maxpool) so state dicts keep their keys.
            resnet.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            resnet.maxpool = nn.Identity()
        return resnet
    if name not in BASIC_BLOCK_LAYOUT:
        raise ValueError(
            f"model.backbone_width {width} is only supported for {' and '.join(BASIC_BLOCK_LAYOUT)} (use 64 for {name})"
        )
    return _narrow_resnet(BASIC_BLOCK_LAYOUT[name], width, stem)


def _stem_layers(width: int, stem: str) -> list[nn.Module]:
    if stem == "cifar":
        return [
            nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
    return [
        nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    ]


def _narrow_resnet(blocks: tuple[int, ...], width: int, stem: str) -> nn.Sequential:
    from torchvision.models.resnet import BasicBlock, conv1x1

    layers = _stem_layers(width, stem)
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


def rep_dim_of(backbone: str, width: int = TORCHVISION_WIDTH) -> int:
    """Size of the pooled backbone output h (the paper's rep_dim: 512 for ResNet-18/34)."""
    return width * 8 * (4 if backbone == "resnet50" else 1)
