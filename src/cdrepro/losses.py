"""The loss terms of CD and of the methods compared with it, as pure functions of tensors.

CD:   instance_loss(z1, z2, tau_I) + feature_loss(f1, f2, tau_F) - lambda * normalized_entropy(f1, f2)
CC:   instance_loss(z1, z2, 0.5) + cluster_contrast_loss(y1, y2, 1.0) + cluster_entropy(y1) + cluster_entropy(y2)
CLD:  instance_loss(z1, z2, 0.5) + lambda * cross_level_loss(g1, g2, k, 0.2)
CDC (reconstructed): swapped_prediction_loss(l1, l2, sinkhorn_knopp(l1), sinkhorn_knopp(l2))
      + nt_xent(joint_representation(p1, z1, alpha), joint_representation(p2, z2, alpha), 0.5)

The formulas of CC, CLD and CDC follow the project's methods notes (METHODS.md); CDC has no
public code, so every choice in its functions is ours.
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


# --- CC: Contrastive Clustering (Li et al., AAAI 2021) ---------------------------------------


def cluster_entropy(y: torch.Tensor) -> torch.Tensor:
    """CC's per-view cluster-balance term: log K - H(p) = log K + sum_k p_k log p_k (natural log).

    p is the share of the batch's probability mass that went to each cluster: the column sums
    of ``y`` divided by their total. The term is 0 when p is uniform and log K when one cluster
    takes everything, so adding it to the loss spreads samples over the clusters.
    Written as CC's public code computes it: no epsilon inside the log, so a cluster whose
    column sum is exactly 0 gives NaN, as there (softmax outputs are never exactly 0 unless
    they underflow).

    y: (B, K) softmax cluster probabilities of one view. Returns a scalar.
    """
    mass = y.float().sum(dim=0)  # (K,)
    p = mass / mass.sum()  # (K,)
    return math.log(p.shape[0]) + (p * torch.log(p)).sum()


def cluster_contrast_loss(y1: torch.Tensor, y2: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """CC's cluster-level contrast: NT-Xent over the 2K columns of the two views' ``y``.

    Column k of view 1 (a B-vector: how much each sample belongs to cluster k) is positive with
    column k of view 2, every other column of both views is a negative; cosine similarity,
    mean over the 2K rows. This is CD's feature loss applied to softmax columns.

    y1, y2: (B, K) softmax cluster probabilities of the two views. Returns a scalar.
    """
    return feature_loss(y1, y2, temperature)


# --- CDC (reconstructed from the abstract; every choice here is ours) -------------------------


def sinkhorn_knopp(logits: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Balanced soft cluster targets from one view's logits, SwAV's Sinkhorn-Knopp (no gradient).

    Q = exp(logits / epsilon), normalised to total mass 1, is rescaled ``iterations`` times,
    each time first so every cluster holds 1/K of the mass, then so every sample holds 1/B;
    the result is multiplied by B. The sample step comes last, so each row of the result sums
    to 1 exactly (up to rounding); each column sums to about B/K (uniform cluster marginal),
    exactly only in the limit of many iterations.
    Runs on ``logits.detach()`` in float32 and in the log domain (log-sum-exp normalisations,
    i.e. the maximum is subtracted before every exp), so large logits / epsilon neither
    overflow nor make a cluster's mass underflow to 0; in exact arithmetic it equals SwAV's
    exp-then-divide form.

    logits: (B, K). Returns q: (B, K) float32, rows sum to 1.
    """
    log_q = logits.detach().float() / epsilon  # (B, K)
    b, k = log_q.shape
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)  # total mass 1
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)  # each cluster 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)  # each sample 1/B
    return torch.exp(log_q + math.log(b))  # (B, K), rows sum to 1


def swapped_prediction_loss(
    logits1: torch.Tensor, logits2: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor
) -> torch.Tensor:
    """Swapped prediction: view 1's softmax predicts view 2's balanced targets and vice versa.

    Returns the SUM (not the average) of the two cross-entropies, each averaged over the batch:
    mean_i CE(q2_i, softmax(logits1_i)) + mean_i CE(q1_i, softmax(logits2_i)),
    with CE(q, p) = -sum_k q_k log p_k. The targets are constants (detached). No temperature
    is applied to the logits (scale them before calling if one is wanted).

    logits1, logits2: (B, K); q1, q2: (B, K) soft targets (e.g. from ``sinkhorn_knopp``).
    """
    ce_12 = -(q2.detach().float() * F.log_softmax(logits1.float(), dim=1)).sum(dim=1)  # (B,)
    ce_21 = -(q1.detach().float() * F.log_softmax(logits2.float(), dim=1)).sum(dim=1)  # (B,)
    return ce_12.mean() + ce_21.mean()


def joint_representation(p: torch.Tensor, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """CDC's joint representation r = normalize([alpha * p ; z]) (row-wise L2 normalisation).

    p: (B, K) categorical probabilities; z: (B, d) instance embedding. Returns (B, K + d).
    """
    return F.normalize(torch.cat([alpha * p, z], dim=1), dim=1)  # (B, K + d)


# --- CLD: Cross-Level Discrimination (Wang, Liu, Yu; CVPR 2021) -------------------------------


def first_k_kmeans(g: torch.Tensor, k: int, iterations: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """CLD's in-batch K-means: first-K initialisation, a fixed number of Lloyd iterations.

    Initial centroids are the first ``k`` rows of ``g``. Each iteration (a) assigns every row
    to its nearest centroid by squared Euclidean distance, ties going to the lowest centroid
    index, then (b) replaces each centroid by the mean of its members; a cluster with no
    member counts 1 member, so its centroid is the zero vector (and it can win points back in
    the next assignment). Centroids are not re-normalised.
    Returned: the labels of the last (``iterations``-th) assignment and the centroids computed
    from that same assignment, i.e. each returned centroid is the mean of the rows carrying
    its label (0 where none does); the labels are not recomputed against those centroids.
    Labels are constants (no gradient); gradients reach ``g`` through the centroid means.
    Vectorised over rows and clusters; the assignment is computed without autograd and uses
    O(B * k * d) temporary memory. Runs in float32.

    g: (B, d) group features of one view; 1 <= k < B; iterations >= 1.
    Returns labels (B,) long and centroids (k, d) float32.
    """
    b = g.shape[0]
    if not 1 <= k < b:
        raise ValueError(
            f"first_k_kmeans needs 1 <= k < batch size, got k={k} for a batch of {b} "
            "(k >= batch size degenerates into instance discrimination)"
        )
    if iterations < 1:
        raise ValueError(f"first_k_kmeans needs iterations >= 1, got {iterations}")
    x = g.float()  # (B, d)
    with torch.no_grad():
        rows = x.detach()
        centroids = rows[:k].clone()  # (k, d)
        for _ in range(iterations):
            dist = ((rows[:, None, :] - centroids[None, :, :]) ** 2).sum(dim=2)  # (B, k)
            labels = dist.argmin(dim=1)  # (B,) first minimum = lowest index on ties
            centroids = _cluster_means(rows, labels, k)  # (k, d)
    return labels, _cluster_means(x, labels, k)  # centroids again, now with autograd


def _cluster_means(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the rows of ``x`` in each of the ``k`` clusters; an empty cluster's mean is 0.

    x: (B, d); labels: (B,) long in [0, k). Returns (k, d).
    """
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, labels, x)  # (k, d)
    counts = torch.bincount(labels, minlength=k).clamp(min=1).to(x.dtype)  # (k,) empty -> 1
    return sums / counts[:, None]


def cross_level_loss(
    g1: torch.Tensor, g2: torch.Tensor, k: int, temperature: float = 0.2, iterations: int = 5
) -> torch.Tensor:
    """CLD's instance-to-group loss between two views.

    With (labels_v, M_v) = first_k_kmeans(g_v, k, iterations):
    0.5 * [CE(g1 M2^T / tau, labels2) + CE(g2 M1^T / tau, labels1)], each CE averaged over the
    batch: every sample of one view must pick the other view's centroid of the group its other
    view fell in. ``g`` is used as given (the group head already L2-normalises it).

    g1, g2: (B, d) group features of the two views; 1 <= k < B. Returns a scalar.
    """
    labels1, centroids1 = first_k_kmeans(g1, k, iterations)  # (B,), (k, d)
    labels2, centroids2 = first_k_kmeans(g2, k, iterations)
    logits12 = g1.float() @ centroids2.T / temperature  # (B, k)
    logits21 = g2.float() @ centroids1.T / temperature  # (B, k)
    return 0.5 * (F.cross_entropy(logits12, labels2) + F.cross_entropy(logits21, labels1))
