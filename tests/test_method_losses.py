"""The loss functions of the compared methods (CC, CLD, CDC) against loop-written oracles.

Each oracle spells out METHODS.md's formula with plain Python loops in float64; the functions
under test are vectorised float32 code, compared at 1e-5. Two tests also re-implement the
authors' public code (CC's ClusterLoss, CLD's KMeans + loss) in their own tensor form, written
independently for this test, and compare values; comments there say where the authors' code
and METHODS.md differ.
"""

import math

import pytest
import torch

from cdrepro.losses import (
    cluster_contrast_loss,
    cluster_entropy,
    cross_level_loss,
    first_k_kmeans,
    instance_loss,
    joint_representation,
    sinkhorn_knopp,
    swapped_prediction_loss,
)

TOL = 1e-5


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rows_of(t):
    return t.double().tolist()


# ---------------------------------------------------------------------------------------------
# Oracles: METHODS.md written as loops.
# ---------------------------------------------------------------------------------------------


def oracle_cluster_entropy(y):
    y = rows_of(y)
    k = len(y[0])
    mass = [sum(row[j] for row in y) for j in range(k)]
    total = sum(mass)
    return math.log(k) + sum((m / total) * math.log(m / total) for m in mass)


def oracle_nt_xent_cosine(a, b, tau):
    """Rows of a and b (lists of vectors): row i of a is positive with row i of b."""
    vecs = a + b
    m = len(a)

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v, strict=True)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))

    total = 0.0
    for i in range(2 * m):
        pos = i + m if i < m else i - m
        denom = sum(math.exp(cos(vecs[i], vecs[j]) / tau) for j in range(2 * m) if j != i)
        total += -(cos(vecs[i], vecs[pos]) / tau - math.log(denom))
    return total / (2 * m)


def columns(y):
    y = rows_of(y)
    return [[row[j] for row in y] for j in range(len(y[0]))]


def oracle_sinkhorn(logits, epsilon, iterations):
    """SwAV's exp-then-divide form, float64 loops: Q is indexed [sample][cluster]."""
    x = rows_of(logits)
    b, k = len(x), len(x[0])
    q = [[math.exp(v / epsilon) for v in row] for row in x]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for j in range(k):  # each cluster gets 1/K of the mass
            col = sum(q[i][j] for i in range(b))
            for i in range(b):
                q[i][j] /= col * k
        for i in range(b):  # each sample gets 1/B of the mass
            row = sum(q[i])
            q[i] = [v / (row * b) for v in q[i]]
    return [[v * b for v in row] for row in q]


def oracle_swapped(logits1, logits2, q1, q2):
    def mean_ce(targets, logits):
        t_rows, l_rows = rows_of(targets), rows_of(logits)
        total = 0.0
        for t_row, l_row in zip(t_rows, l_rows, strict=True):
            lse = math.log(sum(math.exp(v) for v in l_row))
            total += -sum(t * (v - lse) for t, v in zip(t_row, l_row, strict=True))
        return total / len(t_rows)

    return mean_ce(q2, logits1) + mean_ce(q1, logits2)


def oracle_kmeans(g, k, iterations):
    """METHODS.md's CLD grouping: first-K init, squared Euclidean, strict '<' keeps the lowest
    index on ties, empty cluster -> count 1 -> zero centroid; returns the last assignment's
    labels and the means of that assignment's members."""
    x = rows_of(g)
    d = len(x[0])
    centroids = [list(row) for row in x[:k]]
    labels = None
    for _ in range(iterations):
        labels = []
        for row in x:
            best, best_dist = 0, None
            for j, c in enumerate(centroids):
                dist = sum((u - v) ** 2 for u, v in zip(row, c, strict=True))
                if best_dist is None or dist < best_dist:
                    best, best_dist = j, dist
            labels.append(best)
        new = []
        for j in range(k):
            members = [row for row, lab in zip(x, labels, strict=True) if lab == j]
            count = max(len(members), 1)
            new.append([sum(row[t] for row in members) / count for t in range(d)])
        centroids = new
    return labels, centroids


def oracle_cross_level(g1, g2, k, tau, iterations):
    def ce(g, centroids, labels):
        total = 0.0
        for row, lab in zip(rows_of(g), labels, strict=True):
            logits = [sum(u * v for u, v in zip(row, c, strict=True)) / tau for c in centroids]
            lse = math.log(sum(math.exp(v) for v in logits))
            total += lse - logits[lab]
        return total / len(labels)

    labels1, centroids1 = oracle_kmeans(g1, k, iterations)
    labels2, centroids2 = oracle_kmeans(g2, k, iterations)
    return 0.5 * (ce(g1, centroids2, labels2) + ce(g2, centroids1, labels1))


def unit_rows(b, d, seed):
    return torch.nn.functional.normalize(torch.randn(b, d, generator=gen(seed)), dim=1)


def softmax_rows(b, k, seed, scale=2.0):
    return torch.softmax(scale * torch.randn(b, k, generator=gen(seed)), dim=1)


# ---------------------------------------------------------------------------------------------
# CC
# ---------------------------------------------------------------------------------------------


def test_cluster_entropy_matches_loop_oracle():
    for seed, (b, k) in enumerate([(16, 10), (7, 3), (64, 20)]):
        y = softmax_rows(b, k, seed)
        assert cluster_entropy(y).item() == pytest.approx(oracle_cluster_entropy(y), abs=TOL)


def test_cluster_entropy_hand_values():
    k = 4
    balanced = torch.full((8, k), 1 / k)
    assert cluster_entropy(balanced).item() == pytest.approx(0.0, abs=1e-6)
    # Half the batch all-in on cluster 0, half on cluster 1: p = (1/2, 1/2, 0+, 0+).
    y = torch.tensor([[1 - 3e-7, 1e-7, 1e-7, 1e-7]] * 2 + [[1e-7, 1 - 3e-7, 1e-7, 1e-7]] * 2)
    assert cluster_entropy(y).item() == pytest.approx(math.log(4) - math.log(2), abs=1e-4)
    # The term is a sum over the view's mass, not a per-sample entropy: a batch whose every
    # sample is uniform and one whose samples are one-hot but balanced both score ~0.
    one_hot_balanced = torch.eye(k).repeat(2, 1) * (1 - 4e-7) + 1e-7
    assert cluster_entropy(one_hot_balanced).item() == pytest.approx(0.0, abs=1e-5)


def test_cluster_contrast_loss_matches_loop_oracle_over_columns():
    for seed, (b, k, tau) in enumerate([(12, 4, 1.0), (9, 10, 1.0), (20, 5, 0.5)]):
        y1, y2 = softmax_rows(b, k, 10 + seed), softmax_rows(b, k, 20 + seed)
        expected = oracle_nt_xent_cosine(columns(y1), columns(y2), tau)
        assert cluster_contrast_loss(y1, y2, tau).item() == pytest.approx(expected, abs=TOL)
    # The contrast is over the K columns, not the B samples: transposing changes the value.
    y1, y2 = softmax_rows(12, 4, 30), softmax_rows(12, 4, 31)
    assert cluster_contrast_loss(y1, y2).item() != pytest.approx(
        oracle_nt_xent_cosine(rows_of(y1), rows_of(y2), 1.0), abs=1e-3
    )


def authors_cc_cluster_loss(c_i, c_j, temperature):
    """CC's public ClusterLoss.forward (modules/contrastive_loss.py), re-implemented in its own
    form: entropy log K + sum p log p of each view with no epsilon (same as METHODS.md), cosine
    similarity of the 2K columns with nn.CosineSimilarity's eps 1e-8 on the norm product (ours
    normalises each vector with eps 1e-12: identical for non-zero columns), the positive logit
    put first and the 2K-2 negatives after it, CrossEntropy(reduction='sum') / 2K."""
    k = c_i.shape[1]
    ne = 0.0
    for c in (c_i, c_j):
        p = c.sum(0) / c.sum()
        ne = ne + math.log(k) + (p * torch.log(p)).sum()
    cols = torch.cat([c_i.t(), c_j.t()], dim=0)  # (2K, B)
    norms = cols.norm(dim=1)
    sim = (cols @ cols.t()) / torch.clamp(norms[:, None] * norms[None, :], min=1e-8) / temperature
    n = 2 * k
    partner = [(r + k) % n for r in range(n)]
    keep = torch.ones(n, n, dtype=torch.bool)
    keep[torch.arange(n), torch.arange(n)] = False
    keep[torch.arange(n), torch.tensor(partner)] = False
    positives = sim[torch.arange(n), torch.tensor(partner)].reshape(n, 1)
    negatives = sim[keep].reshape(n, n - 2)
    logits = torch.cat([positives, negatives], dim=1)
    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(n, dtype=torch.long), reduction="sum") / n
    return loss + ne


def authors_cc_instance_loss(z_i, z_j, temperature):
    """CC's InstanceLoss: raw dot products (its network L2-normalises z before the loss)."""
    b = z_i.shape[0]
    z = torch.cat([z_i, z_j])
    sim = z @ z.t() / temperature
    n = 2 * b
    partner = torch.tensor([(r + b) % n for r in range(n)])
    keep = torch.ones(n, n, dtype=torch.bool)
    keep[torch.arange(n), torch.arange(n)] = False
    keep[torch.arange(n), partner] = False
    logits = torch.cat([sim[torch.arange(n), partner].reshape(n, 1), sim[keep].reshape(n, n - 2)], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(n, dtype=torch.long), reduction="sum") / n


def test_cc_terms_match_the_authors_code_form():
    b, k = 32, 10
    y1, y2 = softmax_rows(b, k, 40), softmax_rows(b, k, 41)
    ours = cluster_contrast_loss(y1, y2, 1.0) + cluster_entropy(y1) + cluster_entropy(y2)
    assert ours.item() == pytest.approx(authors_cc_cluster_loss(y1, y2, 1.0).item(), abs=TOL)
    # Instance part (the existing CD function) on unit-norm z, as CC's network provides it.
    z1, z2 = unit_rows(b, 16, 42), unit_rows(b, 16, 43)
    assert instance_loss(z1, z2, 0.5).item() == pytest.approx(authors_cc_instance_loss(z1, z2, 0.5).item(), abs=TOL)


# ---------------------------------------------------------------------------------------------
# CDC (reconstructed)
# ---------------------------------------------------------------------------------------------


def test_sinkhorn_matches_swav_loop_oracle():
    for seed, (b, k, eps, iters) in enumerate([(16, 4, 0.05, 3), (10, 7, 0.05, 1), (24, 5, 0.1, 6)]):
        logits = 0.1 * torch.randn(b, k, generator=gen(50 + seed))
        q = sinkhorn_knopp(logits, eps, iters)
        expected = torch.tensor(oracle_sinkhorn(logits, eps, iters), dtype=torch.float32)
        assert q.shape == (b, k) and q.dtype == torch.float32
        assert torch.allclose(q, expected, atol=TOL, rtol=0)


def test_sinkhorn_rows_exact_after_default_three_iterations_columns_close():
    # The sample normalisation comes last, so with the default 3 iterations each row sums to 1
    # (up to rounding). The cluster marginal is only approached: on a batch of 256 with
    # logits / epsilon ~ N(0, 1) (well conditioned) each column sums to B/K within 1e-3 * B/K.
    b, k = 256, 10
    logits = 0.05 * torch.randn(b, k, generator=gen(60))
    q = sinkhorn_knopp(logits)  # epsilon 0.05, 3 iterations
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=TOL, rtol=0)
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k), atol=1e-3 * b / k, rtol=0)
    assert (q >= 0).all()


def test_sinkhorn_balances_columns_given_enough_iterations():
    # Peaked logits (logits / epsilon ~ N(0, 10^2)): 3 iterations leave the columns visibly
    # unbalanced, so the uniform cluster marginal (every column sums to B/K) is checked after
    # 200 iterations, where Sinkhorn has converged; rows (every row sums to 1) hold at any count.
    b, k = 128, 8
    logits = 0.5 * torch.randn(b, k, generator=gen(61))
    q = sinkhorn_knopp(logits, 0.05, 200)
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=TOL, rtol=0)
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k), atol=1e-3 * b / k, rtol=0)
    q3 = sinkhorn_knopp(logits, 0.05, 3)
    assert torch.allclose(q3.sum(dim=1), torch.ones(b), atol=TOL, rtol=0)
    # Balancing really happened: the raw softmax's column sums are far from B/K.
    raw = torch.softmax(logits / 0.05, dim=1).sum(dim=0)
    assert (raw - b / k).abs().max() > 1.0


def test_sinkhorn_is_stable_detached_and_shift_invariant():
    b, k = 64, 10
    logits = (30 * torch.randn(b, k, generator=gen(62))).requires_grad_()  # /0.05 -> |x| ~ 600
    q = sinkhorn_knopp(logits)
    assert torch.isfinite(q).all() and not q.requires_grad
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=TOL, rtol=0)
    moderate = 0.1 * torch.randn(b, k, generator=gen(63))
    assert torch.allclose(sinkhorn_knopp(moderate + 5.0), sinkhorn_knopp(moderate), atol=TOL, rtol=0)
    assert sinkhorn_knopp(moderate.double()).dtype == torch.float32


def test_swapped_prediction_loss_matches_loop_oracle_and_is_a_sum():
    b, k = 16, 6
    l1 = torch.randn(b, k, generator=gen(70))
    l2 = torch.randn(b, k, generator=gen(71))
    q1, q2 = sinkhorn_knopp(l1), sinkhorn_knopp(l2)
    value = swapped_prediction_loss(l1, l2, q1, q2)
    assert value.item() == pytest.approx(oracle_swapped(l1, l2, q1, q2), abs=TOL)
    # Sum, not average, of the two directions: identical views give twice one direction.
    one = oracle_swapped(l1, l1, q1, q1) / 2
    assert swapped_prediction_loss(l1, l1, q1, q1).item() == pytest.approx(2 * one, abs=TOL)
    # One-hot targets reduce it to ordinary cross-entropy.
    labels = torch.arange(b) % k
    onehot = torch.nn.functional.one_hot(labels, k).float()
    expected = 2 * torch.nn.functional.cross_entropy(l1, labels).item()
    assert swapped_prediction_loss(l1, l1, onehot, onehot).item() == pytest.approx(expected, abs=TOL)


def test_swapped_prediction_loss_gradient_reaches_logits_not_targets():
    l1 = torch.randn(8, 4, generator=gen(72), requires_grad=True)
    l2 = torch.randn(8, 4, generator=gen(73), requires_grad=True)
    q1 = torch.softmax(torch.randn(8, 4, generator=gen(74)), 1).requires_grad_()
    q2 = torch.softmax(torch.randn(8, 4, generator=gen(75)), 1).requires_grad_()
    swapped_prediction_loss(l1, l2, q1, q2).backward()
    assert l1.grad.abs().sum() > 0 and l2.grad.abs().sum() > 0
    assert q1.grad is None and q2.grad is None


def test_joint_representation_matches_loop_oracle():
    b, k, d, alpha = 5, 3, 4, 0.7
    p = softmax_rows(b, k, 80)
    z = unit_rows(b, d, 81)
    r = joint_representation(p, z, alpha)
    assert r.shape == (b, k + d)
    for i, (p_row, z_row) in enumerate(zip(rows_of(p), rows_of(z), strict=True)):
        joint = [alpha * v for v in p_row] + z_row
        norm = math.sqrt(sum(v * v for v in joint))
        assert r[i].tolist() == pytest.approx([v / norm for v in joint], abs=TOL)
    # alpha = 0 leaves the (already unit) instance part alone, categorical part zero.
    r0 = joint_representation(p, z, 0.0)
    assert torch.allclose(r0[:, k:], z, atol=TOL) and torch.equal(r0[:, :k], torch.zeros(b, k))


# ---------------------------------------------------------------------------------------------
# CLD
# ---------------------------------------------------------------------------------------------


def assert_kmeans_matches_oracle(g, k, iterations=5):
    labels, centroids = first_k_kmeans(g, k, iterations)
    exp_labels, exp_centroids = oracle_kmeans(g, k, iterations)
    assert labels.dtype == torch.long and labels.shape == (g.shape[0],)
    assert centroids.shape == (k, g.shape[1])
    assert labels.tolist() == exp_labels
    assert torch.allclose(centroids, torch.tensor(exp_centroids, dtype=torch.float32), atol=TOL, rtol=0)
    return labels, centroids


def test_first_k_kmeans_matches_loop_oracle_on_random_batches():
    for seed, (b, d, k) in enumerate([(32, 8, 5), (24, 16, 12), (40, 4, 3)]):
        assert_kmeans_matches_oracle(unit_rows(b, d, 90 + seed), k)
    # Unnormalised inputs and other iteration counts follow the same rule.
    assert_kmeans_matches_oracle(3 * torch.randn(20, 5, generator=gen(95)), 4, iterations=1)
    assert_kmeans_matches_oracle(torch.randn(20, 5, generator=gen(96)), 4, iterations=9)


def test_first_k_kmeans_k_close_to_batch_size():
    b = 9
    labels, centroids = assert_kmeans_matches_oracle(unit_rows(b, 6, 97), b - 1)
    assert labels.max().item() < b - 1
    # Duplicated rows with K = B - 1 force at least one tie and one empty cluster.
    g = unit_rows(b, 6, 98)
    g[3] = g[1]
    assert_kmeans_matches_oracle(g, b - 1)


def test_first_k_kmeans_empty_cluster_has_zero_centroid_and_no_members():
    # Rows 0 and 1 are identical, so both initial centroids are the same point: every row ties
    # and goes to cluster 0; cluster 1 is empty, counts 1 member, centroid 0. With a = (1,0),
    # b = (0,1) the zero centroid (distance 1) never beats c0 = (2/3, 1/3) (2/9 and 8/9).
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels, centroids = assert_kmeans_matches_oracle(g, 2)
    assert labels.tolist() == [0, 0, 0]
    assert (labels == 1).sum().item() == 0
    assert torch.equal(centroids[1], torch.zeros(2))
    assert centroids[0].tolist() == pytest.approx([2 / 3, 1 / 3], abs=TOL)


def test_first_k_kmeans_zero_centroid_can_win_points_back():
    # After the first assignment cluster 1 is empty (centroid 0); in the second the point near
    # the origin is closer to 0 (0.02) than to c0 = (0.7, 0.0333) (0.364) and joins cluster 1.
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.1, 0.1]])
    labels1, centroids1 = assert_kmeans_matches_oracle(g, 2, iterations=1)
    assert labels1.tolist() == [0, 0, 0] and torch.equal(centroids1[1], torch.zeros(2))
    labels, centroids = assert_kmeans_matches_oracle(g, 2)
    assert labels.tolist() == [0, 0, 1]
    assert torch.allclose(centroids, torch.tensor([[1.0, 0.0], [0.1, 0.1]]), atol=TOL, rtol=0)


def test_first_k_kmeans_ties_go_to_the_lowest_index():
    # (0,0) is 50 from centroid 0 and exactly 1 from centroids 1 and 2: it joins cluster 1.
    g = torch.tensor([[5.0, 5.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    labels, centroids = assert_kmeans_matches_oracle(g, 3, iterations=1)
    assert labels.tolist() == [0, 1, 2, 1]
    assert torch.allclose(centroids, torch.tensor([[5.0, 5.0], [0.5, 0.0], [-1.0, 0.0]]), atol=TOL, rtol=0)
    # Equidistant from centroids 0 and 1 (both at distance 1 / 2): cluster 0.
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    labels, _ = assert_kmeans_matches_oracle(g, 2, iterations=1)
    assert labels.tolist() == [0, 1, 0, 0]
    assert_kmeans_matches_oracle(g, 2)


def test_first_k_kmeans_centroids_are_means_of_the_returned_labels():
    # "Last assignment": the returned centroids are exactly the means of the returned labels'
    # members (they are not recomputed after a further assignment).
    g = unit_rows(30, 8, 99)
    labels, centroids = first_k_kmeans(g, 6)
    for j in range(6):
        members = g[labels == j]
        expected = members.mean(0) if len(members) else torch.zeros(8)
        assert torch.allclose(centroids[j], expected, atol=TOL, rtol=0)


def test_first_k_kmeans_gradient_flows_through_centroid_means_only():
    b, d, k = 20, 6, 4
    g = unit_rows(b, d, 100).requires_grad_()
    labels, centroids = first_k_kmeans(g, k)
    assert not labels.requires_grad and labels.grad_fn is None
    assert centroids.requires_grad
    w = torch.randn(k, d, generator=gen(101))
    (centroids * w).sum().backward()
    counts = torch.bincount(labels, minlength=k).float()
    expected = w[labels] / counts[labels][:, None]  # d(mean)/d(member) = 1 / count
    assert torch.allclose(g.grad, expected, atol=TOL, rtol=0)
    assert (g.grad.abs().sum(dim=1) > 0).all()  # every row, not only the first K


def test_first_k_kmeans_rejects_k_not_below_batch():
    g = unit_rows(6, 3, 102)
    for bad in (6, 7, 0, -1):
        with pytest.raises(ValueError, match="k"):
            first_k_kmeans(g, bad)
    with pytest.raises(ValueError, match="batch"):
        cross_level_loss(g, g.clone(), 6)
    with pytest.raises(ValueError):
        cross_level_loss(g, g.clone(), 0)


def test_cross_level_loss_matches_loop_oracle():
    for seed, (b, d, k, tau) in enumerate([(16, 8, 4, 0.2), (12, 16, 11, 0.2), (24, 5, 6, 0.5)]):
        g1, g2 = unit_rows(b, d, 110 + seed), unit_rows(b, d, 120 + seed)
        expected = oracle_cross_level(g1, g2, k, tau, 5)
        assert cross_level_loss(g1, g2, k, tau).item() == pytest.approx(expected, abs=TOL)


def test_cross_level_loss_gradient_reaches_both_views():
    g1 = unit_rows(16, 8, 130).requires_grad_()
    g2 = unit_rows(16, 8, 131).requires_grad_()
    loss = cross_level_loss(g1, g2, 4)
    loss.backward()
    assert torch.isfinite(loss)
    assert g1.grad.abs().sum() > 0 and g2.grad.abs().sum() > 0


def authors_cld(g1, g2, k, tau, niters):
    """CLD's public code (spectral_clustering.py KMeans, train_cifar_*_cld.py loss),
    re-implemented in its own form: centroids computed with autograd in every iteration,
    member counts from unique() over the labels with a default of 1, sums by scatter_add,
    float32. Same rule as METHODS.md; their argparse defaults (Niters 20, cld_t 0.07) differ
    from the scripts METHODS.md follows (--num_iters 5, --cld_t 0.2)."""

    def kmeans(x):
        n, d = x.shape
        c = x[:k, :].clone()
        for _ in range(niters):
            dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
            cl = dist.argmin(dim=1).long().view(-1)
            idx = cl.view(n, 1).expand(-1, d)
            present, counts = cl.unique(return_counts=True)
            counts_all = torch.ones(k, dtype=torch.long)
            counts_all[present] = counts
            c = torch.zeros(k, d, dtype=torch.float).scatter_add(0, idx, x) / counts_all.float().unsqueeze(1)
        return cl, c

    cl1, c1 = kmeans(g1)
    cl2, c2 = kmeans(g2)
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(g1 @ c2.t() / tau, cl2) + ce(g2 @ c1.t() / tau, cl1)), (cl1, c1)


def test_cld_matches_the_authors_code_form_in_value_and_gradient():
    b, d, k = 32, 16, 16  # K = B / 2, the default here
    base1, base2 = unit_rows(b, d, 140), unit_rows(b, d, 141)
    g1, g2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    a1, a2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    ours = cross_level_loss(g1, g2, k, 0.2, 5)
    theirs, (their_labels, their_centroids) = authors_cld(a1, a2, k, 0.2, 5)
    labels, centroids = first_k_kmeans(base1, k, 5)
    assert labels.tolist() == their_labels.tolist()
    assert torch.allclose(centroids, their_centroids.detach(), atol=TOL, rtol=0)
    assert ours.item() == pytest.approx(theirs.item(), abs=TOL)
    ours.backward()
    theirs.backward()
    assert torch.allclose(g1.grad, a1.grad, atol=TOL, rtol=0)
    assert torch.allclose(g2.grad, a2.grad, atol=TOL, rtol=0)
