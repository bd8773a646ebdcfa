import numpy as np
import pytest

from cdrepro.metrics import cluster_accuracy, clustering_scores, confusion


def test_perfect_clustering_under_relabelling():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1])
    assert clustering_scores(labels, clusters) == pytest.approx({"nmi": 1.0, "ari": 1.0, "acc": 1.0})


def test_accuracy_uses_one_to_one_map():
    # Cluster 0 holds three of class 0; cluster 1 one of each: best map 0->0, 1->1 = 4/6.
    labels = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 0, 1, 1, 0])
    assert cluster_accuracy(labels, clusters) == pytest.approx(4 / 6)


def test_accuracy_never_merges_clusters():
    # Two clusters of class 0 cannot both map to it: one of them counts as wrong.
    labels = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(labels, clusters) == pytest.approx(4 / 6)
    assert confusion(labels, clusters).shape == (3, 2)


def test_known_nmi_and_ari():
    labels = np.array([0, 0, 1, 1])
    clusters = np.array([0, 1, 0, 1])  # independent of the labels
    scores = clustering_scores(labels, clusters)
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["ari"] == pytest.approx(-0.5)
    assert scores["acc"] == pytest.approx(0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        cluster_accuracy(np.array([0, 1]), np.array([0, 1, 1]))
