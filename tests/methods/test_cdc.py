"""CDC (reconstructed; cdrepro.methods.cdc): heads, the loss composed from cdrepro.losses with
every reconstructed option away from its default, argmax evaluation, params and docs."""

from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from cdrepro.config import validate_params
from cdrepro.losses import joint_representation, nt_xent, sinkhorn_knopp, swapped_prediction_loss
from cdrepro.methods import METHODS, build_method
from cdrepro.methods.base import ARGMAX, KMEANS
from methods.variants import tiny_variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
OFF_DEFAULT = dict(
    alpha=0.5,
    contrast_temperature=0.3,
    categorical_weight=0.25,
    sinkhorn_epsilon=0.1,
    sinkhorn_iterations=5,
    feature_dim=24,
)


tiny_cdc = partial(tiny_variant, method="cdc")


def test_heads_shapes_and_label(settings_of):
    model = build_method(settings_of("cdc", 16, edit=tiny_cdc), num_classes=10)
    out = model(torch.rand(6, 3, 16, 16))
    assert set(out) == {"h", "z", "logits"}
    assert out["z"].shape == (6, 128) and out["logits"].shape == (6, 10)
    torch.testing.assert_close(out["z"].norm(dim=1), torch.ones(6))
    assert model.label == "CDC (reconstructed)" and model.gathered == ("z", "logits")
    for head in (model.categorical_head, model.instance_head):
        assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]


def test_loss_is_contrast_on_the_joint_representation_plus_weighted_swap(settings_of):
    model = build_method(settings_of("cdc", 16, edit=lambda p: tiny_cdc(p, **OFF_DEFAULT)), 10)
    torch.manual_seed(0)
    out1, out2 = model(torch.rand(12, 3, 16, 16)), model(torch.rand(12, 3, 16, 16))
    assert out1["z"].shape == (12, 24)
    terms = model.checked_terms(model.loss(out1, out2))
    assert model.term_names() == ("contrast", "swap")

    l1, l2 = out1["logits"], out2["logits"]
    q1, q2 = sinkhorn_knopp(l1, 0.1, 5), sinkhorn_knopp(l2, 0.1, 5)
    swap = swapped_prediction_loss(l1, l2, q1, q2)
    r1 = joint_representation(torch.softmax(l1, dim=1), out1["z"], 0.5)
    r2 = joint_representation(torch.softmax(l2, dim=1), out2["z"], 0.5)
    contrast = nt_xent(r1, r2, 0.3)
    torch.testing.assert_close(terms["swap"], swap, rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["contrast"], contrast, rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["loss"], contrast + 0.25 * swap, rtol=0, atol=1e-6)


def test_both_heads_learn_from_the_loss(settings_of):
    model = build_method(settings_of("cdc", 16, edit=tiny_cdc), 10)
    torch.manual_seed(1)
    terms = model.loss(model(torch.rand(8, 3, 16, 16)), model(torch.rand(8, 3, 16, 16)))
    terms["loss"].backward()
    assert model.categorical_head[2].weight.grad.abs().sum() > 0
    assert model.instance_head[2].weight.grad.abs().sum() > 0


def test_stages_are_kmeans_on_h_then_the_argmax_of_the_logits(settings_of):
    stages = build_method(settings_of("cdc", 16, edit=tiny_cdc), 10).stages()
    assert list(stages) == ["backbone", "cluster"]
    assert [(s.output, s.assign) for s in stages.values()] == [("h", KMEANS), ("logits", ARGMAX)]


def test_a_cdc_variant_validates_and_resolves(settings_of):
    def edit(params):
        tiny_cdc(params, alpha=2)
        validate_params(params)

    settings = settings_of("cdc", edit=edit)
    assert settings.options == {
        "feature_dim": 128,
        "alpha": 2.0,
        "contrast_temperature": 0.5,
        "categorical_weight": 1.0,
        "sinkhorn_epsilon": 0.05,
        "sinkhorn_iterations": 3,
    }


@pytest.mark.parametrize("method", ["cc", "cld", "cdc"])
def test_the_docs_list_every_option_with_its_default(method):
    """docs/methods.md is where a reader finds which choices are ours: its section of each
    method (headed "## `name`") has a table row per option, with the default the code has."""
    sections = DOCS.read_text().split("\n## ")
    section = next(s for s in sections if s.startswith(f"`{method}`"))
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for option, spec in METHODS[method].options.items():
        assert any(line.startswith(f"| `{option}` | `{spec['default']}` |") for line in rows), f"{method}.{option}"
    assert len(rows) == len(METHODS[method].options), f"{method}: the docs list options the code does not have"
