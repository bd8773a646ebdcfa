"""Clustering metrics: NMI, ARI and Hungarian-matched accuracy; the names of the held-out ones."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

KNN, LINEAR = "knn", "linear"
"""The held-out accuracies (0..1) a stage of metrics.json may carry beside NMI/ARI/ACC: weighted
kNN (``cdrepro.knn``, every stage) and the linear probe (``cdrepro.linear_probe``, the backbone)."""
HELD_OUT_SCORES: tuple[str, ...] = (KNN, LINEAR)


def confusion(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """(n_clusters, n_classes) counts; rectangular when the two numbers differ."""
    labels = np.asarray(labels, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    if labels.shape != clusters.shape:
        raise ValueError(f"labels {labels.shape} and clusters {clusters.shape} differ in shape")
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    return table


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Best one-to-one map of clusters to classes (Hungarian algorithm), as a fraction.

    With more clusters than classes the unmatched clusters count as errors, and with fewer
    the unmatched classes do: a one-to-one map never merges.
    """
    table = confusion(labels, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    return {
        "nmi": float(skm.normalized_mutual_info_score(labels, clusters)),
        "ari": float(skm.adjusted_rand_score(labels, clusters)),
        "acc": cluster_accuracy(labels, clusters),
    }
