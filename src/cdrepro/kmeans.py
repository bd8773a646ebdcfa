"""K-means on a torch device, for evaluating large sets on the GPU.

Same algorithm as scikit-learn's default ``KMeans``: greedy k-means++ seeding (2 + log k
candidates per centre), Lloyd iterations until the centres move less than ``tol`` times the
mean per-feature variance, the best of ``n_init`` starts by inertia. scikit-learn stays the
CPU path (``cdrepro.evaluate``); tests/test_kmeans.py checks the two agree.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KMeansResult:
    labels: torch.Tensor  # (N,) int64
    centers: torch.Tensor  # (k, d)
    inertia: float  # sum of squared distances to the nearest centre
    n_iter: int


def squared_distances(x: torch.Tensor, centers: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """(N, k) squared Euclidean distances, clamped at 0 against rounding.

    x: (N, d), centers: (k, d), x_sq: (N,) the rows' squared norms (computed once per fit).
    """
    c_sq = (centers * centers).sum(dim=1)  # (k,)
    return (x_sq[:, None] - 2.0 * (x @ centers.T) + c_sq[None, :]).clamp_min_(0.0)


def kmeans_plus_plus(x: torch.Tensor, x_sq: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: each new centre is the best of several D^2-sampled candidates."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centers = [x[first]]  # list of (1, d)
    closest = squared_distances(x, centers[0], x_sq)[:, 0]  # (N,)
    for _ in range(1, k):
        # D^2 sampling; multinomial needs a positive total, which only duplicates can break.
        weights = closest if float(closest.sum()) > 0 else torch.ones_like(closest)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        candidate_d = squared_distances(x, x[candidates], x_sq)  # (N, trials)
        potentials = torch.minimum(closest[:, None], candidate_d).sum(dim=0)  # (trials,)
        best = int(torch.argmin(potentials))
        centers.append(x[candidates[best]][None])
        closest = torch.minimum(closest, candidate_d[:, best])
    return torch.cat(centers)  # (k, d)


def lloyd(
    x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd iterations from ``centers``; an emptied cluster keeps its previous centre."""
    k = centers.shape[0]
    ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned: the iterations run)
        labels = squared_distances(x, centers, x_sq).argmin(dim=1)  # (N,)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)  # (k, d)
        counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, ones)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        shift = float(((moved - centers) ** 2).sum())
        centers = moved
        if shift <= tol:
            break
    distances = squared_distances(x, centers, x_sq)
    inertia, labels = distances.min(dim=1)
    return labels, centers, float(inertia.sum()), n_iter


def kmeans(
    features: torch.Tensor, n_clusters: int, n_init: int = 10, seed: int = 0, max_iter: int = 300, tol: float = 1e-4
) -> KMeansResult:
    """Best of ``n_init`` k-means++ starts, on the features' own device.

    features: (N, d), any float dtype; the fit runs in float32 with full-precision matmuls
    (TF32 would move points between near-equidistant centres).
    """
    x = features.float()
    if x.shape[0] < n_clusters:
        raise ValueError(f"K-means needs at least {n_clusters} points, got {x.shape[0]}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    x_sq = (x * x).sum(dim=1)  # (N,)
    # sklearn's tolerance is relative to the data's scale: tol * mean per-feature variance.
    abs_tol = tol * float(x.var(dim=0, unbiased=False).mean())
    best: KMeansResult | None = None
    with _full_precision_matmul():
        for _ in range(n_init):
            start = kmeans_plus_plus(x, x_sq, n_clusters, generator)
            labels, centers, inertia, n_iter = lloyd(x, x_sq, start, max_iter, abs_tol)
            if best is None or inertia < best.inertia:
                best = KMeansResult(labels, centers, inertia, n_iter)
    assert best is not None
    return best


@contextlib.contextmanager
def _full_precision_matmul() -> Iterator[None]:
    """IEEE float32 matmuls on CUDA for the block, whatever the caller set (TF32 is restored)."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
