"""bench/cd_feature_loss.py: its analytic bounds hold for CD's feature loss, and its column
statistics are what they claim (docs/evidence.md, "Why CD's feature loss stays near its chance
value")."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from cdrepro.losses import feature_loss

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "cd_feature_loss.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("cd_feature_loss", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _heads(n: int, k: int, scale: float, shift: float, agree: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, generator=g)
    b = agree * a + math.sqrt(1 - agree**2) * torch.randn(n, k, generator=g)
    return torch.sigmoid(scale * a + shift), torch.sigmoid(scale * b + shift)


@pytest.mark.parametrize(
    "scale,shift,agree,tau",
    [
        (0.3, 0.0, 0.9, 1.0),
        (1.0, 0.0, 0.99, 1.0),
        (2.0, -1.5, 0.95, 1.0),
        (4.0, -3.0, 1.0, 0.5),
        (1.0, 0.5, 0.5, 0.2),
        (8.0, 0.0, 1.0, 1.0),
    ],
)
def test_feature_loss_respects_the_bounds(bench, scale, shift, agree, tau):
    f1, f2 = _heads(64, 16, scale, shift, agree, seed=int(scale * 10 + agree * 100))
    k = f1.shape[1]
    loss = float(feature_loss(f1, f2, tau))
    stats = bench.head_statistics(f1, f2, tau)
    assert stats["feature_loss"] == pytest.approx(loss)
    assert loss <= bench.chance(k) + 2 / tau  # a row's logits span at most 1/tau each way
    assert loss >= bench.bound_nonneg(k, tau) - 1e-9  # (2)
    assert loss >= bench.bound_cbar(k, tau, stats["cbar"]) - 1e-9  # (3)


def test_equal_columns_sit_at_chance(bench):
    f = torch.full((32, 8), 0.5)
    assert float(feature_loss(f, f, 1.0)) == pytest.approx(bench.chance(8))
    stats = bench.head_statistics(f, f, 1.0)
    assert stats["cbar"] == pytest.approx(1.0)
    assert bench.bound_cbar(8, 1.0, stats["cbar"]) == pytest.approx(bench.chance(8))


def test_numbers_quoted_in_the_evidence(bench):
    assert bench.chance(128) == pytest.approx(5.541, abs=5e-4)
    assert bench.chance(256) == pytest.approx(6.236, abs=5e-4)
    assert bench.bound_nonneg(128, 1.0) == pytest.approx(4.548, abs=5e-4)
    assert bench.bound_nonneg(256, 1.0) == pytest.approx(5.240, abs=5e-4)
    assert bench.threshold_drho(1.0, 1.0) == pytest.approx(0.721, abs=5e-4)
    assert bench.chance(128) - bench.bound_ne(128, 1.0, 0.96) == pytest.approx(0.055, abs=5e-4)
    gamma, beta, ne, lf = bench.gaussian_heads_optimum(128, 1.0, 1.0, free_beta=False)
    assert beta == 0 and gamma == pytest.approx(0.75, abs=0.06) and ne == pytest.approx(0.915, abs=0.01)
    assert bench.chance(128) - lf == pytest.approx(0.10, abs=0.01)
    gamma, beta, ne, lf = bench.gaussian_heads_optimum(128, 1.0, 1.0)
    assert beta == pytest.approx(-1.7, abs=0.1) and ne == pytest.approx(0.57, abs=0.02)
    assert bench.chance(128) - lf == pytest.approx(0.49, abs=0.01)
