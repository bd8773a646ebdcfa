"""CC (cdrepro.methods.cc): heads, loss composed from cdrepro.losses, the hand-derived parameter
count of METHODS.md's layer list, argmax evaluation, params, and the authors' checkpoint keys."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models

from cdrepro import released
from cdrepro.config import ParamsError, validate_params
from cdrepro.evaluate import stage_scores
from cdrepro.losses import cluster_contrast_loss, cluster_entropy, instance_loss
from cdrepro.methods import build_method
from cdrepro.methods.base import ARGMAX, KMEANS
from methods.variants import tiny_variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")


tiny_cc = partial(tiny_variant, method="cc")


def test_heads_shapes_and_ranges(settings_of):
    model = build_method(settings_of("cc", 16, edit=tiny_cc), num_classes=10)
    out = model(torch.rand(6, 3, 16, 16))
    assert set(out) == {"h", "z", "y"}
    assert out["h"].shape == (6, 32) and out["z"].shape == (6, 128) and out["y"].shape == (6, 10)
    torch.testing.assert_close(out["z"].norm(dim=1), torch.ones(6))  # L2-normalised, as CC's z
    torch.testing.assert_close(out["y"].sum(dim=1), torch.ones(6))  # a softmax over the K clusters
    assert model.label == "CC" and model.gathered == ("z", "y")


def test_k_is_the_number_of_classes_and_feature_dim_an_option(settings_of):
    settings = settings_of("cc", 16, edit=lambda p: tiny_cc(p, feature_dim=24))
    out = build_method(settings, num_classes=20)(torch.rand(3, 3, 16, 16))  # CIFAR-100-20
    assert out["y"].shape == (3, 20) and out["z"].shape == (3, 24)


def test_layers_are_the_authors_in_their_order(settings_of):
    model = build_method(settings_of("cc", 16, edit=tiny_cc), 10)
    assert [type(m) for m in model.instance_projector] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [type(m) for m in model.cluster_projector] == [nn.Linear, nn.ReLU, nn.Linear, nn.Softmax]
    assert all(
        layer.bias is not None
        for layer in (
            model.instance_projector[0],
            model.instance_projector[2],
            model.cluster_projector[0],
            model.cluster_projector[2],
        )
    )
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # heads: none; backbone: 2d only


def test_loss_is_instance_plus_cluster_contrast_plus_both_entropies(settings_of):
    """tau_C other than 1 and tau_I other than 0.5, so a swapped or dropped temperature shows."""

    def edit(params):
        tiny_cc(params, cluster_temperature=0.7)
        params["train"]["instance_temperature"] = 0.3

    model = build_method(settings_of("cc", 16, edit=edit), 10)
    torch.manual_seed(0)
    out1, out2 = model(torch.rand(8, 3, 16, 16)), model(torch.rand(8, 3, 16, 16))
    terms = model.checked_terms(model.loss(out1, out2))
    assert model.term_names() == ("instance", "cluster", "entropy")
    assert torch.equal(terms["instance"], instance_loss(out1["z"], out2["z"], 0.3))
    assert torch.equal(terms["cluster"], cluster_contrast_loss(out1["y"], out2["y"], 0.7))
    assert torch.equal(terms["entropy"], cluster_entropy(out1["y"]) + cluster_entropy(out2["y"]))
    expected = terms["instance"] + terms["cluster"] + terms["entropy"]  # weight 1, added
    torch.testing.assert_close(terms["loss"], expected, rtol=0, atol=1e-6)


def test_trainable_parameters_with_resnet34_feature_dim_128_k_10_match_the_layer_list(settings_of):
    def edit(params):
        params["model"].update(backbone="resnet34", backbone_width=64, stem="imagenet")  # the authors'
        params["variants"]["cc"] = {"method": "cc"}

    model = build_method(settings_of("cc", 256, edit=edit), num_classes=10)
    # ResNet-34 without its fc: torchvision's 21,797,672 minus fc's 512 * 1000 + 1000 = 513,000.
    backbone = 21_797_672 - (512 * 1000 + 1000)
    assert backbone == 21_284_672
    instance_head = (512 * 512 + 512) + (512 * 128 + 128)  # Linear(512, 512), Linear(512, 128)
    cluster_head = (512 * 512 + 512) + (512 * 10 + 10)  # Linear(512, 512), Linear(512, K = 10)
    assert (instance_head, cluster_head) == (328_320, 267_786)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == backbone + instance_head + cluster_head == 21_880_778


def test_stages_are_kmeans_on_h_then_the_argmax_of_y(settings_of):
    model = build_method(settings_of("cc", 16, edit=tiny_cc), 3)
    stages = model.stages()
    assert list(stages) == ["backbone", "cluster"] and model.final_stage() == "cluster"
    assert (stages["backbone"].output, stages["backbone"].assign) == ("h", KMEANS)
    assert (stages["cluster"].output, stages["cluster"].assign) == ("y", ARGMAX)
    # The argmax is the clustering itself: a y whose argmax is a relabelling of the classes
    # scores 1 even where K-means on y would not be asked (no K-means runs on it).
    labels = np.arange(30) % 3
    y = np.full((30, 3), 0.2, dtype=np.float32)
    y[np.arange(30), (labels + 1) % 3] = 0.6
    h = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    scores = stage_scores(model, {"h": h, "y": y}, labels, 3, {"kmeans_n_init": 2, "kmeans_seed": 42}, None)
    assert scores["cluster"] == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "acc": pytest.approx(1.0)}


def test_a_cc_variant_validates_resolves_and_checks_its_options(embedded_params, settings_of):
    def edit(params):
        tiny_cc(params)
        params["methods"]["cc"] = {"cluster_temperature": 2}  # an int: stored as the float it means
        validate_params(params)

    settings = settings_of("cc", edit=edit)
    assert settings.method == "cc" and settings.run_id == "digits-bs128-cc-s42"
    assert settings.options == {"feature_dim": 128, "cluster_temperature": 2.0}
    assert settings.to_dict()["method"] == "cc" and settings.instance_temperature == 0.5
    embedded_params["variants"]["cc"]["feature_num"] = 10  # CD's option on a CC variant
    with pytest.raises(ParamsError, match=r"variants\.cc\.feature_num: 'feature_num' is an option of cd, not of cc"):
        validate_params(embedded_params)


# --------------------------------------------------------------------------- authors' checkpoints


def authors_state(model_backbone: str = "resnet18", k: int = 3) -> dict[str, torch.Tensor]:
    """A state dict with the keys CC's ``Network`` (modules/network.py) has: its ResNet is
    torchvision's without an fc, then two Sequentials whose Linear layers sit at indices 0 and 2.
    Values are random, so a mapping that mixed two keys of one shape would show."""
    torch.manual_seed(5)
    resnet = getattr(models, model_backbone)(weights=None)
    state = {f"resnet.{key}": value for key, value in resnet.state_dict().items() if not key.startswith("fc.")}
    for name, out in (("instance_projector", 128), ("cluster_projector", k)):
        state[f"{name}.0.weight"], state[f"{name}.0.bias"] = torch.randn(512, 512), torch.randn(512)
        state[f"{name}.2.weight"], state[f"{name}.2.bias"] = torch.randn(out, 512), torch.randn(out)
    return state


def test_a_checkpoint_of_the_authors_maps_one_to_one(settings_of, tmp_path):
    def edit(params):
        params["model"].update(backbone="resnet18", backbone_width=64, stem="imagenet")  # the authors'
        params["variants"]["cc"] = {"method": "cc"}

    model = build_method(settings_of("cc", 16, edit=edit), 3)
    state = authors_state()
    assert set(released.to_our_names(state, model.authors_layout)) == set(model.state_dict())
    path = tmp_path / "checkpoint_1000.tar"
    torch.save(state, path)  # a bare state dict of theirs
    assert released.load_checkpoint(path, model, "digits-bs16-cc-s42") == released.AUTHORS
    assert torch.equal(model.cluster_projector[2].weight, state["cluster_projector.2.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, state["resnet.layer4.1.bn2.running_var"])


def test_a_training_checkpoint_of_the_authors_under_net_loads(settings_of, tmp_path):
    def edit(params):
        params["model"].update(backbone="resnet18", backbone_width=64, stem="imagenet")  # the authors'
        params["variants"]["cc"] = {"method": "cc"}

    model = build_method(settings_of("cc", 16, edit=edit), 3)
    path = tmp_path / "checkpoint_1000.tar"
    # CC's save_model: {'net': model.state_dict(), 'optimizer': ..., 'epoch': ...}; its
    # released files in save/ are these, and cluster.py loads ['net'].
    torch.save({"net": authors_state(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 1000}, path)
    assert released.load_checkpoint(path, model, "digits-bs16-cc-s42") == released.AUTHORS
