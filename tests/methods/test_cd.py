import pytest
import torch
from torch import nn

from cdrepro.losses import feature_loss, instance_loss, normalized_entropy
from cdrepro.methods import build_method

VARIANTS = ["cd", "no_ne", "no_bn", "no_ne_no_bn", "no_sched", "no_head", "single_view"]


def test_heads_shapes_and_range(settings_of):
    model = build_method(settings_of("cd"), num_classes=10)
    out = model(torch.rand(4, 3, 32, 32))
    assert set(out) == {"h", "z", "f"}
    assert out["h"].shape == (4, 128) and out["z"].shape == (4, 128) and out["f"].shape == (4, 128)
    assert out["f"].min() >= 0 and out["f"].max() <= 1


def test_feature_num_is_its_own_option_not_the_classes(settings_of):
    settings = settings_of("cd", edit=lambda p: p["methods"]["cd"].update(feature_num=24))
    out = build_method(settings, num_classes=10)(torch.rand(3, 3, 32, 32))
    assert out["f"].shape == (3, 24)


def test_predictor_layout_and_last_bn_switch(settings_of):
    with_bn = build_method(settings_of("cd"), 10)
    without = build_method(settings_of("no_bn"), 10)
    kinds = [type(m) for m in with_bn.feature_predictor]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.Sigmoid]
    assert with_bn.feature_predictor[4].num_features == 128
    assert with_bn.feature_predictor[3].bias is None and with_bn.feature_predictor[0].bias is None
    assert [type(m) for m in without.feature_predictor][-2:] == [nn.Linear, nn.Sigmoid]
    projector = [type(m) for m in with_bn.instance_projector]
    assert projector == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_with_its_wiring(embedded_params, settings_of, variant):
    settings = settings_of(variant)
    model = build_method(settings, 10)
    out = model(torch.rand(3, 3, 32, 32))
    switches = embedded_params["variants"][variant]
    assert ("f" in out) == switches["head"]
    assert list(model.stages()) == (["backbone", "feature"] if switches["head"] else ["backbone", "projector"])
    assert model.term_names() == (("instance", "feature", "entropy") if switches["head"] else ("instance",))
    if switches["head"]:
        assert isinstance(model.feature_predictor[-2], nn.BatchNorm1d) == switches["last_bn"]
        assert out["f"].shape == (3, 128)
    assert out["z"].shape == (3, 128)  # hidden_dim = batch size, as the paper


@pytest.mark.parametrize("variant", ["cd", "no_ne", "no_head"])
def test_loss_is_the_sum_of_its_switched_terms(settings_of, variant):
    """total = instance + feature - lambda * NE, each term switched as the variant says; a
    weight other than 1 so that a dropped factor shows."""
    settings = settings_of(variant, edit=lambda p: p["methods"]["cd"].update(entropy_weight=0.5))
    model = build_method(settings, 10)
    torch.manual_seed(0)
    out1, out2 = model(torch.rand(8, 3, 32, 32)), model(torch.rand(8, 3, 32, 32))
    terms = model.checked_terms(model.loss(out1, out2))
    expected = instance_loss(out1["z"], out2["z"], 0.5)
    if settings.options["head"]:
        expected = expected + feature_loss(out1["f"], out2["f"], 1.0)
        entropy = normalized_entropy(out1["f"], out2["f"])
        assert torch.equal(terms["entropy"], entropy)  # logged even where it does not count
        if settings.options["entropy"]:
            expected = expected - 0.5 * entropy
    assert torch.allclose(terms["loss"], expected, atol=1e-6)


def test_sigmoid_heads_follow_the_head_switch(settings_of):
    assert type(build_method(settings_of("cd"), 10)).sigmoid_heads(settings_of("cd").options) == "f"
    assert type(build_method(settings_of("no_head"), 10)).sigmoid_heads(settings_of("no_head").options) is None
