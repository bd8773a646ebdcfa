"""cdrepro.kmeans (the device K-means) against scikit-learn's KMeans, the CPU path."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

import cdrepro.kmeans as kmeans_module
from cdrepro.evaluate import kmeans_device, kmeans_scores
from cdrepro.kmeans import kmeans, squared_distances
from cdrepro.metrics import clustering_scores

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]


def blobs(seed: int = 0, n: int = 3000, d: int = 64, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=2.0, random_state=seed)
    return x.astype(np.float32), y


def sklearn_fit(x: np.ndarray, k: int, seed: int = 0) -> KMeans:
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x.astype(np.float64))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling: each cluster of ``a`` is exactly one cluster of ``b``."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# Two fits of one partition number their clusters differently, so NMI sums the same terms in
# another order: its last bits may differ on some CPUs. Scores of one partition are compared to
# this, the partition itself exactly.
SAME_SCORES = 1e-9


def test_squared_distances_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=g), torch.randn(4, 7, generator=g)
    direct = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    got = squared_distances(x, c, (x * x).sum(1))
    assert torch.allclose(got, direct, atol=1e-4)
    assert (got >= 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_partition_and_scores_as_sklearn_on_blobs(device, seed):
    x, y = blobs(seed)
    ours = kmeans(torch.from_numpy(x).to(device), 10, n_init=10, seed=seed)
    ref = sklearn_fit(x, 10, seed)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.01)
    labels = ours.labels.cpu().numpy()
    assert same_partition(labels, ref.labels_)
    assert clustering_scores(y, labels) == pytest.approx(clustering_scores(y, ref.labels_), abs=SAME_SCORES)


@pytest.mark.parametrize("device", DEVICES)
def test_inertia_within_one_percent_on_real_images(device):
    """Digits' pixels overlap far more than blobs do: local optima differ, quality must not.

    The bounds hold for every seed 0-29 of either side (worst: inertia +0.3 %, a score 0.027
    apart), so rounding that changes a k-means++ draw on another CPU cannot fail them."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    ours = kmeans(torch.from_numpy(x).to(device), 10, n_init=10, seed=0)
    ref = sklearn_fit(x, 10, 0)
    assert ours.inertia <= ref.inertia_ * 1.01
    ours_scores = clustering_scores(digits.target, ours.labels.cpu().numpy())
    ref_scores = clustering_scores(digits.target, ref.labels_)
    for metric in ("nmi", "ari", "acc"):
        assert ours_scores[metric] == pytest.approx(ref_scores[metric], abs=0.05), metric


def test_inertia_is_the_sum_of_squared_distances_to_assigned_centres():
    x, _ = blobs(3, n=500, d=8, k=4)
    fit = kmeans(torch.from_numpy(x), 4, n_init=3, seed=0)
    xt = torch.from_numpy(x).double()
    direct = ((xt - fit.centers.double()[fit.labels]) ** 2).sum()
    assert fit.inertia == pytest.approx(float(direct), rel=1e-4)
    # every point is assigned to its nearest centre
    nearest = torch.cdist(xt, fit.centers.double()).argmin(dim=1)
    assert torch.equal(nearest, fit.labels)


def test_same_seed_same_result_other_seed_other_start(monkeypatch):
    """Starts are compared as the data rows k-means++ picks, not by inertia: on separated blobs
    every start ends in the same partition, whose inertias differ only by rounding (issue 14)."""
    x, _ = blobs(4, n=800, d=16, k=6)
    t = torch.from_numpy(x)
    starts: list[tuple[int, ...]] = []
    seeding = kmeans_module.kmeans_plus_plus

    def recorded(points, points_sq, k, generator):
        centers = seeding(points, points_sq, k, generator)
        match = (points[None] == centers[:, None]).all(dim=2)  # (k, N): copies, so exact
        assert (match.sum(dim=1) == 1).all(), "a start centre is not one data row"
        starts.append(tuple(match.int().argmax(dim=1).tolist()))
        return centers

    monkeypatch.setattr(kmeans_module, "kmeans_plus_plus", recorded)
    a, b = kmeans(t, 6, n_init=3, seed=5), kmeans(t, 6, n_init=3, seed=5)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)
    assert a.inertia == b.inertia and a.n_iter == b.n_iter
    assert starts[:3] == starts[3:]
    assert len(set(starts[:3])) == 3, "the generator must advance between the n_init starts"
    assert all(len(set(start)) == 6 for start in starts), "D^2 sampling never repeats a centre"

    starts.clear()
    for seed in range(4):
        kmeans(t, 6, n_init=1, seed=seed, max_iter=1)
    assert len(set(starts)) == 4, "each seed must give its own k-means++ start"


def test_more_starts_never_give_a_worse_inertia():
    x = (load_digits().data / 16.0).astype(np.float32)
    t = torch.from_numpy(x)
    assert kmeans(t, 10, n_init=10, seed=0).inertia <= kmeans(t, 10, n_init=1, seed=0).inertia


def test_duplicate_points_and_fewer_points_than_clusters():
    same = torch.ones(20, 3)
    fit = kmeans(same, 3, n_init=2, seed=0)  # all distances zero: seeding must not crash
    assert fit.inertia == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 5 points"):
        kmeans(torch.randn(4, 2), 5)


def test_backend_choice():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert kmeans_device("auto", cpu) is None  # scikit-learn stays the CPU path
    assert kmeans_device("auto", gpu) == gpu
    assert kmeans_device("sklearn", gpu) is None
    assert kmeans_device("torch", cpu) == cpu


def test_kmeans_scores_agree_between_backends():
    x, y = blobs(7)
    sklearn_scores = kmeans_scores(x, y, 10, 10, 0, None)
    torch_scores = kmeans_scores(x, y, 10, 10, 0, torch.device("cpu"))
    assert sklearn_scores == pytest.approx(torch_scores, abs=SAME_SCORES)


def test_sklearn_path_keeps_float32_when_a_float64_copy_would_be_large(monkeypatch):
    """Above the limit scikit-learn gets the float32 features as they are (no 2x copy)."""
    seen = []
    real_fit_predict = KMeans.fit_predict

    def spy(self, x, *args, **kwargs):
        seen.append(x.dtype)
        return real_fit_predict(self, x, *args, **kwargs)

    monkeypatch.setattr(KMeans, "fit_predict", spy)
    x, y = blobs(8, n=300, d=8, k=3)
    small = kmeans_scores(x, y, 3, 2, 0)
    monkeypatch.setattr("cdrepro.evaluate.FLOAT64_COPY_LIMIT", x.size * 8 - 1)
    large = kmeans_scores(x, y, 3, 2, 0)
    assert seen == [np.float64, np.float32]
    # Well-separated blobs: the same partition either way.
    assert small == pytest.approx(large, abs=SAME_SCORES)
