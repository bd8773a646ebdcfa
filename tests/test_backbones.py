import pytest
import torch

from cdrepro.backbones import make_backbone, rep_dim_of


def test_torchvision_backbones_have_the_paper_rep_dim():
    x = torch.rand(2, 3, 64, 64)
    assert make_backbone("resnet18").eval()(x).shape == (2, 512) == (2, rep_dim_of("resnet18"))
    assert make_backbone("resnet34").eval()(x).shape == (2, 512)
    stem = make_backbone("resnet34").conv1
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2))  # ImageNet-style stem


def test_narrow_backbone_width_sets_rep_dim():
    assert make_backbone("resnet18", width=16).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 128)
    assert rep_dim_of("resnet18", 16) == 128
    with pytest.raises(ValueError, match="resnet50"):
        make_backbone("resnet50", width=16)
