"""CLD (cdrepro.methods.cld): SimCLR's instance branch, the normed-linear group head, the loss
composed from cdrepro.losses, K = B/2 by default and K < B enforced, stages and params."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdrepro.config import ParamsError, validate_params
from cdrepro.losses import cross_level_loss, instance_loss
from cdrepro.methods import build_method
from cdrepro.methods.base import KMEANS
from cdrepro.methods.cld import NormedLinear
from methods.variants import tiny_variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")


tiny_cld = partial(tiny_variant, method="cld")


def test_heads_shapes_and_unit_group_features(settings_of):
    model = build_method(settings_of("cld", 16, edit=tiny_cld), num_classes=10)
    out = model(torch.rand(6, 3, 16, 16))
    assert set(out) == {"h", "z", "g"}
    assert out["z"].shape == (6, 16) and out["g"].shape == (6, 128)  # z: hidden_dim = B
    torch.testing.assert_close(out["g"].norm(dim=1), torch.ones(6))
    assert model.gathered == ("z", "g") and model.label == "CLD"


def test_the_instance_branch_is_simclrs(settings_of):
    """The same instance projector from the same seed, built first: CLD adds a branch and
    changes nothing of SimCLR's."""

    def edit(params):
        tiny_cld(params)
        params["variants"]["simclr"] = {"method": "simclr"}

    torch.manual_seed(3)
    cld = build_method(settings_of("cld", 16, edit=edit), 10)
    torch.manual_seed(3)
    simclr = build_method(settings_of("simclr", 16), 10)
    for name, tensor in simclr.state_dict().items():
        assert torch.equal(cld.state_dict()[name], tensor), name
    extra = set(cld.state_dict()) - set(simclr.state_dict())
    assert extra == {"group_head.weight"}  # normed linear: a weight, no bias


def test_normed_linear_is_the_cosine_with_each_column():
    torch.manual_seed(0)
    layer = NormedLinear(5, 3)
    torch.testing.assert_close(layer.weight.norm(dim=0), torch.ones(3))  # the authors' init
    assert layer.weight.shape == (5, 3) and len(list(layer.parameters())) == 1
    x = torch.randn(4, 5)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([2.0, 0.5, 3.0]))  # column scale does not change the output
    expected = torch.stack([torch.stack([F.cosine_similarity(row, col, dim=0) for col in layer.weight.T]) for row in x])
    torch.testing.assert_close(layer(x), expected)


def test_group_head_option_chooses_a_plain_linear(settings_of):
    model = build_method(settings_of("cld", 16, edit=lambda p: tiny_cld(p, group_head="linear", group_dim=24)), 10)
    assert isinstance(model.group_head, nn.Linear) and model.group_head.bias is not None
    assert model(torch.rand(3, 3, 16, 16))["g"].shape == (3, 24)


@pytest.mark.parametrize(("batch", "groups"), [(16, 8), (128, 64), (2, 1), (7, 3)])
def test_groups_default_to_half_the_batch(settings_of, batch, groups):
    settings = settings_of("cld", batch, edit=tiny_cld)
    assert settings.options["groups"] == groups  # resolved from half_batch for this batch
    assert build_method(settings, 10).groups == groups


@pytest.mark.parametrize("groups", [16, 40])
def test_groups_not_below_the_batch_are_refused_at_construction(settings_of, groups):
    settings = settings_of("cld", 16, edit=lambda p: tiny_cld(p, groups=groups))
    with pytest.raises(
        ValueError, match=rf"cld option groups gives K = {groups} groups for a batch of 16 .*smaller than the batch"
    ):
        build_method(settings, 10)
    assert build_method(settings_of("cld", 16, edit=lambda p: tiny_cld(p, groups=15)), 10).groups == 15


def test_loss_is_instance_plus_lambda_times_the_cross_level_loss(settings_of):
    """Non-default K, tau_G, lambda and iterations, so a dropped option shows."""
    options = dict(groups=5, group_temperature=0.3, group_weight=0.5, kmeans_iterations=3)
    model = build_method(settings_of("cld", 16, edit=lambda p: tiny_cld(p, **options)), 10)
    torch.manual_seed(0)
    out1, out2 = model(torch.rand(16, 3, 16, 16)), model(torch.rand(16, 3, 16, 16))
    terms = model.checked_terms(model.loss(out1, out2))
    assert model.term_names() == ("instance", "group")
    assert torch.equal(terms["instance"], instance_loss(out1["z"], out2["z"], 0.5))
    assert torch.equal(terms["group"], cross_level_loss(out1["g"], out2["g"], 5, 0.3, 3))
    torch.testing.assert_close(terms["loss"], terms["instance"] + 0.5 * terms["group"], rtol=0, atol=1e-6)
    terms["loss"].backward()
    assert model.group_head.weight.grad.abs().sum() > 0  # the group branch is trained


def test_stages_are_kmeans_on_h_then_on_z_then_on_g(settings_of):
    stages = build_method(settings_of("cld", 16, edit=tiny_cld), 10).stages()
    assert list(stages) == ["backbone", "projector", "group"]  # the final stage last: g
    assert [(s.output, s.assign) for s in stages.values()] == [("h", KMEANS), ("z", KMEANS), ("g", KMEANS)]


@pytest.mark.parametrize("groups", [0, 2.5, "all"])
def test_params_refuse_groups_that_are_not_a_width(embedded_params, groups):
    tiny_cld(embedded_params, groups=groups)
    with pytest.raises(ParamsError, match=r"variants\.cld\.groups: .* not valid"):
        validate_params(embedded_params)


@pytest.mark.parametrize("groups", ["batch_size", 128, 300])
def test_validate_refuses_groups_not_below_a_runs_batch_naming_the_run(embedded_params, groups):
    """K = B is the degenerate case; `cdrepro validate` says so before any training."""
    tiny_cld(embedded_params, groups=groups)
    embedded_params["runs"].append({"dataset": "digits", "batch_size": 128, "variant": "cld", "seed": 1})
    first = next(i for i, run in enumerate(embedded_params["runs"]) if run["variant"] == "cld")
    with pytest.raises(
        ParamsError,
        match=rf"runs\[{first}\]: cld option groups gives K = "
        rf"{128 if groups != 300 else 300} groups for a batch of 128",
    ):
        validate_params(embedded_params)


def test_a_cld_variant_validates_and_resolves(embedded_params, settings_of):
    def edit(params):
        tiny_cld(params)
        params["methods"]["cld"] = {"group_weight": 1, "groups": 32}
        validate_params(params)

    settings = settings_of("cld", 128, edit=edit)
    assert settings.options == {
        "groups": 32,
        "group_temperature": 0.2,
        "group_weight": 1.0,
        "kmeans_iterations": 5,
        "group_dim": 128,
        "group_head": "normed_linear",
    }
    assert build_method(settings, 10).groups == 32
