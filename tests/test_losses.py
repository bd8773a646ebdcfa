import math

import pytest
import torch

from cdrepro.losses import feature_loss, instance_loss, normalized_entropy, nt_xent


def naive_nt_xent(a, b, tau):
    """The paper's Eq. 3-4 written as loops, to check the vectorised version against."""
    rows = torch.nn.functional.normalize(torch.cat([a, b]).double(), dim=1)
    m = a.shape[0]
    total = 0.0
    for i in range(2 * m):
        pos = i + m if i < m else i - m
        denom = sum(math.exp(float(rows[i] @ rows[k]) / tau) for k in range(2 * m) if k != i)
        total += -math.log(math.exp(float(rows[i] @ rows[pos]) / tau) / denom)
    return total / (2 * m)


def test_nt_xent_hand_worked_orthogonal_pairs():
    # Rows (1,0),(0,1) in both views: each row sees its positive at cosine 1 and two negatives
    # at cosine 0, so loss = -log(e^(1/t) / (e^(1/t) + 2)).
    a = torch.eye(2)
    for tau in (1.0, 0.5):
        expected = math.log(1 + 2 * math.exp(-1 / tau))
        assert nt_xent(a, a.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_matches_loop_definition():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert nt_xent(a, b, 0.5).item() == pytest.approx(naive_nt_xent(a, b, 0.5), rel=1e-5)


def test_instance_loss_is_invariant_to_sample_order_and_scale():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    perm = torch.randperm(8, generator=g)
    base = instance_loss(z1, z2)
    assert instance_loss(z1[perm], z2[perm]).item() == pytest.approx(base.item(), rel=1e-5)
    assert instance_loss(3 * z1, 0.5 * z2).item() == pytest.approx(base.item(), rel=1e-5)
    # Swapping the positives breaks the pairing, so the loss must rise.
    assert instance_loss(z1, z2[perm]).item() != pytest.approx(base.item(), rel=1e-3)


def test_instance_loss_lower_when_views_agree():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=g)
    noise = torch.randn(16, 8, generator=g)
    assert instance_loss(z, z + 0.01 * noise) < instance_loss(z, noise)


def test_feature_loss_contrasts_heads_not_samples():
    g = torch.Generator().manual_seed(3)
    f1, f2 = torch.rand(6, 4, generator=g), torch.rand(6, 4, generator=g)
    assert feature_loss(f1, f2, 1.0).item() == pytest.approx(nt_xent(f1.T, f2.T, 1.0).item())
    assert feature_loss(f1, f2, 1.0).item() == pytest.approx(naive_nt_xent(f1.T, f2.T, 1.0), rel=1e-5)
    # Reordering heads the same way in both views is a relabelling: no change.
    heads = torch.tensor([2, 0, 3, 1])
    assert feature_loss(f1[:, heads], f2[:, heads]).item() == pytest.approx(feature_loss(f1, f2).item(), rel=1e-5)
    # Not the instance loss on the same matrices (which would contrast the 6 samples).
    assert feature_loss(f1, f2).item() != pytest.approx(instance_loss(f1, f2, 1.0).item(), rel=1e-3)


def test_normalized_entropy_values():
    half = torch.full((3, 5), 0.5)
    assert normalized_entropy(half, half).item() == pytest.approx(1.0, abs=1e-6)
    quarter = torch.full((2, 2), 0.25)
    expected = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.8113 bits
    assert normalized_entropy(quarter, quarter).item() == pytest.approx(expected, rel=1e-6)
    certain = torch.tensor([[0.0, 1.0]])
    assert normalized_entropy(certain, certain).item() == pytest.approx(0.0, abs=1e-9)
    # The mean runs over both views.
    assert normalized_entropy(half[:1, :2], certain).item() == pytest.approx(0.5, abs=1e-6)


def test_normalized_entropy_is_finite_and_differentiable_at_saturation():
    p = torch.tensor([[0.0, 1.0, 0.5]], requires_grad=True)
    value = normalized_entropy(p, p)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(p.grad).all()
