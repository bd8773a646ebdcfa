"""The three terms of the CD objective, as pure functions of tensors.

total = instance_loss(z1, z2, tau_I) + feature_loss(f1, f2, tau_F) - lambda * normalized_entropy(f1, f2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ENTROPY_EPS = 1e-12


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy between paired rows of ``a`` and ``b``.

    Row i of ``a`` is positive with row i of ``b``; every other row of both is a negative and
    a row's similarity with itself is excluded. Returns the mean over all 2M rows.

    a, b: (M, d).
    """
    m = a.shape[0]
    rows = F.normalize(torch.cat([a, b], dim=0).float(), dim=1)  # (2M, d)
    logits = rows @ rows.T / temperature  # (2M, 2M) cosine similarity / tau
    self_mask = torch.eye(2 * m, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positive = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)]).to(logits.device)  # (2M,)
    return F.cross_entropy(logits, positive)


def instance_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Instance-level contrast: each image's two views attract, other images repel.

    z1, z2: (N, d) projector outputs of the two views.
    """
    return nt_xent(z1, z2, temperature)


def feature_loss(f1: torch.Tensor, f2: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Feature-level contrast: head k of view 1 attracts head k of view 2, other heads repel.

    The contrast is over heads (columns), so the predictions are transposed first.
    f1, f2: (N, K) sigmoid outputs of the two views.
    """
    return nt_xent(f1.T, f2.T, temperature)  # rows are the K heads, each an N-vector


def normalized_entropy(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy of every prediction of both views, in bits (so in [0, 1]).

    CD maximises it (it is subtracted from the loss) so heads stay undecided on average
    rather than saturating, which keeps them describing features shared by many images.
    f1, f2: (N, K) probabilities.
    """
    p = torch.cat([f1, f2], dim=0).float()  # (2N, K)
    entropy = -p * torch.log(p + ENTROPY_EPS) - (1 - p) * torch.log(1 - p + ENTROPY_EPS)
    return entropy.mean() / math.log(2)
