import pytest
import torch

from cdrepro.backbones import make_backbone, rep_dim_of


def test_torchvision_backbones_have_the_paper_rep_dim():
    x = torch.rand(2, 3, 64, 64)
    assert make_backbone("resnet18", 64, "imagenet").eval()(x).shape == (2, 512) == (2, rep_dim_of("resnet18"))
    assert make_backbone("resnet34", 64, "imagenet").eval()(x).shape == (2, 512)
    stem = make_backbone("resnet34", 64, "imagenet").conv1
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2))  # ImageNet-style stem


def test_narrow_backbone_width_sets_rep_dim():
    assert make_backbone("resnet18", 16, "imagenet").eval()(torch.rand(2, 3, 32, 32)).shape == (2, 128)
    assert rep_dim_of("resnet18", 16) == 128
    with pytest.raises(ValueError, match="resnet50"):
        make_backbone("resnet50", 16, "imagenet")


@pytest.mark.parametrize("width", [64, 16])
def test_cifar_stem_keeps_32px_maps_and_the_rep_dim(width):
    """The CIFAR stem (3x3 stride 1, no max-pool) leaves 32x32 maps after it where the ImageNet
    stem leaves 8x8, and changes nothing after the stem (same rep_dim, same block count)."""
    x = torch.rand(2, 3, 32, 32)
    imagenet, cifar = make_backbone("resnet18", width, "imagenet"), make_backbone("resnet18", width, "cifar")
    assert cifar.eval()(x).shape == imagenet.eval()(x).shape == (2, rep_dim_of("resnet18", width))
    stem_of = {64: lambda net: net.conv1, 16: lambda net: net[0]}[width]
    assert (stem_of(cifar).kernel_size, stem_of(cifar).stride) == ((3, 3), (1, 1))
    after_stem: dict = {}  # the maps right after the stem, caught by a forward hook
    hook_target = cifar.maxpool if width == 64 else cifar[2]
    hook_target.register_forward_hook(lambda _m, _i, out: after_stem.update(shape=out.shape))
    cifar(x)
    assert after_stem["shape"][-2:] == (32, 32)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) for net in (imagenet, cifar)]
    assert convs[0] == convs[1]
    if width == 64:  # torchvision's names are kept, so state-dict keys do not change
        assert imagenet.state_dict().keys() == cifar.state_dict().keys()


def test_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="model.stem 'tiny'"):
        make_backbone("resnet18", 64, "tiny")
