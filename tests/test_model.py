import pytest
import torch
from torch import nn

from cdrepro.config import resolve_run, runs_of
from cdrepro.model import ContrastiveDisentangling, build_model, make_backbone


def test_torchvision_backbones_have_the_paper_rep_dim():
    x = torch.rand(2, 3, 64, 64)
    assert make_backbone("resnet18").eval()(x).shape == (2, 512)
    assert make_backbone("resnet34").eval()(x).shape == (2, 512)
    stem = make_backbone("resnet34").conv1
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2))  # ImageNet-style stem


def test_narrow_backbone_width_sets_rep_dim():
    assert make_backbone("resnet18", width=16).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match="resnet50"):
        make_backbone("resnet50", width=16)


def test_heads_shapes_and_range():
    model = ContrastiveDisentangling("resnet18", 128, hidden_dim=32, feature_num=24, backbone_width=16)
    out = model(torch.rand(4, 3, 32, 32))
    assert out.h.shape == (4, 128) and out.z.shape == (4, 32) and out.f.shape == (4, 24)
    assert out.f.min() >= 0 and out.f.max() <= 1


def test_predictor_layout_and_last_bn_switch():
    with_bn = ContrastiveDisentangling("resnet18", 128, 32, 24, last_bn=True, backbone_width=16)
    without = ContrastiveDisentangling("resnet18", 128, 32, 24, last_bn=False, backbone_width=16)
    kinds = [type(m) for m in with_bn.feature_predictor]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.Sigmoid]
    assert with_bn.feature_predictor[4].num_features == 24
    assert with_bn.feature_predictor[3].bias is None and with_bn.feature_predictor[0].bias is None
    assert [type(m) for m in without.feature_predictor][-2:] == [nn.Linear, nn.Sigmoid]
    projector = [type(m) for m in with_bn.instance_projector]
    assert projector == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]


@pytest.mark.parametrize("variant", ["cd", "no_ne", "no_bn", "no_ne_no_bn", "no_sched", "no_head", "single_view"])
def test_every_variant_builds_with_its_wiring(embedded_params, variant):
    run = next(r for r in runs_of(embedded_params) if r.variant == variant)
    settings = resolve_run(embedded_params, run)
    model = build_model(settings)
    out = model(torch.rand(3, 3, 32, 32))
    switches = embedded_params["variants"][variant]
    assert (out.f is None) == (not switches["head"])
    if switches["head"]:
        has_last_bn = isinstance(model.feature_predictor[-2], nn.BatchNorm1d)
        assert has_last_bn == switches["last_bn"]
        assert out.f.shape == (3, settings.feature_num) == (3, run.batch_size)
    assert out.z.shape == (3, run.batch_size)  # hidden_dim = batch size, as the paper
