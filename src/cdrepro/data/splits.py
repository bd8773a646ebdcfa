"""Index-level splits of a labelled dataset: held-out test splits, long-tailed and correlated
training sets, and the checks that a pair of splits can be evaluated.

Every function here returns indices into the dataset's arrays (int64, ascending unless said
otherwise), never copies of images, so that a split is a few kilobytes to store, hash and
compare. Randomness comes from ``numpy.random.default_rng(seed)`` (PCG64) and only through
``Generator.random`` keys ordered by a stable ``argsort``: the same seed gives the same split on
every machine and in every process (no ``hash()`` order, no global random state, no
platform-dependent sort), and a class's members are always visited in ascending index order.

* ``stratified_split``: a fixed, seeded train/test split with each class's share of the test
  split equal to ``test_fraction`` (datasets without an official test split, e.g. digits).
* ``long_tail_counts`` / ``long_tail_indices``: the exponential long-tail profile of
  CIFAR-10-LT / CIFAR-100-LT (Cui, Jia, Lin, Song, Belongie, "Class-balanced loss based on
  effective number of samples", CVPR 2019; Cao, Wei, Gaidon, Arechiga, Ma, "Learning
  imbalanced datasets with label-distribution-aware margin loss" (LDAM), NeurIPS 2019): class
  ``c`` of ``C`` keeps ``floor(n * ratio ** (-c / (C - 1)))`` images, class 0 all ``n``, the
  last ``n / ratio``. Applied to the train split only; the test split stays balanced.
* ``repeated_indices``: a highly correlated training set (CLD's second claim), each image
  repeated ``r`` times. The copies are not near-duplicates on disk: every step draws its
  augmented views independently, so the ``r`` copies are ``r`` independent augmentations of
  one image, and a batch can hold several of them (false negatives for instance
  discrimination, which is what CLD says it is robust to).
* ``check_split_classes``, ``check_clusters``: refuse a pair of splits that cannot be scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# A count within this of an integer is that integer: n / ratio ** x computed in floating point
# can land a hair below an exact integer (e.g. 50 as 49.999999999999993) and floor would then
# drop an image on some platforms' pow and not others.
_COUNT_SLACK = 1e-9


def _labels(name: str, labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integer class labels, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _shuffled(members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``members`` in a random order drawn from ``rng``: uniform keys, stable sort."""
    keys = rng.random(members.size)  # (n,) float64 in [0, 1)
    return members[np.argsort(keys, kind="stable")]


def stratified_split(labels: Any, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split keeping each class's proportion: ``(train_idx, test_idx)``.

    labels: (N,) integer labels. Class ``c`` with ``n_c`` images puts
    ``floor(test_fraction * n_c + 0.5)`` of them in the test split, clipped to 1..n_c - 1 so
    that every class is in both splits. Classes are visited in increasing label order, each
    class's members in ascending index order, one generator for all: the split depends only
    on ``labels``, ``test_fraction`` and ``seed``. Both index arrays are ascending.
    """
    labels = _labels("labels", labels)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    rng = np.random.default_rng(_seed(seed))
    if labels.size == 0:
        raise ValueError("labels is empty: there is nothing to split")
    classes, counts = np.unique(labels, return_counts=True)
    single = classes[counts < 2]
    if single.size:
        raise ValueError(
            f"classes {single.tolist()} have a single image and cannot be in both "
            "splits: give them more images or drop them"
        )
    train_parts, test_parts = [], []
    for c, n_c in zip(classes, counts, strict=True):
        members = _shuffled(np.flatnonzero(labels == c), rng)  # (n_c,)
        n_test = min(max(math.floor(test_fraction * n_c + 0.5), 1), n_c - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def _imbalance_ratio(imbalance_ratio: Any) -> float:
    ratio = imbalance_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not math.isfinite(ratio):
        raise ValueError(f"imbalance_ratio must be a finite number >= 1, got {ratio!r}")
    if ratio < 1:
        raise ValueError(
            f"imbalance_ratio must be >= 1 (head class size / tail class size; "
            f"1 keeps the classes balanced), got {ratio!r}: pass e.g. 10 or 100"
        )
    return float(imbalance_ratio)


def long_tail_counts(n_per_class: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Images kept per class under the exponential profile, class 0 first (the head).

    Class ``c`` keeps ``floor(n * ratio ** (-c / (C - 1)))``: class 0 keeps ``n``, the last
    ``floor(n / ratio)``, the counts in between falling geometrically (Cui et al. 2019; Cao et
    al. 2019, whose code computes ``int(n * (1 / ratio) ** (c / (C - 1)))``). CIFAR-10-LT at
    ratio 100 from 5,000 per class: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50.
    """
    n = _positive_int("n_per_class", n_per_class)
    num_classes = _positive_int("num_classes", num_classes)
    ratio = _imbalance_ratio(imbalance_ratio)
    if num_classes == 1:
        return [n]
    counts = []
    for c in range(num_classes):
        exact = n / ratio ** (c / (num_classes - 1))
        counts.append(math.floor(exact + _COUNT_SLACK))
    if counts[-1] < 1:
        raise ValueError(
            f"imbalance_ratio={ratio:g} leaves the last class none of its {n} images: pass imbalance_ratio <= {n}"
        )
    return counts


def long_tail_indices(labels: Any, imbalance_ratio: float, seed: int) -> np.ndarray:
    """Indices of a long-tailed subset of ``labels``, exactly ``long_tail_counts`` per class.

    labels: (N,) integer labels of a (train) split. The classes present, in increasing label
    order, are ranked 0 (head) to C - 1 (tail); ``n`` is the smallest class's size (the class
    size itself on a balanced split such as CIFAR-10's 5,000), so every class can supply its
    count. Which images a class keeps is a seeded random subset. Returns ascending indices.
    """
    labels = _labels("labels", labels)
    ratio = _imbalance_ratio(imbalance_ratio)
    rng = np.random.default_rng(_seed(seed))
    if labels.size == 0:
        raise ValueError("labels is empty: there is nothing to subsample")
    classes, sizes = np.unique(labels, return_counts=True)
    counts = long_tail_counts(int(sizes.min()), classes.size, ratio)
    kept = [_shuffled(np.flatnonzero(labels == c), rng)[:count] for c, count in zip(classes, counts, strict=True)]
    return np.sort(np.concatenate(kept))


def repeated_indices(n: int, repeats: int) -> np.ndarray:
    """``0, 0, ..., 1, 1, ...``: each of ``n`` images ``repeats`` times, (n * repeats,) int64.

    The copies share one stored image; their augmented views are drawn independently at each
    step, which is what makes the set correlated rather than merely duplicated.
    """
    n = _positive_int("n", n)
    repeats = _positive_int("repeats", repeats)
    return np.repeat(np.arange(n, dtype=np.int64), repeats)


def check_split_classes(train_labels: Any, test_labels: Any, class_names: Sequence[str]) -> None:
    """Refuse, in one line naming them, test classes that the train split has no image of.

    A kNN or linear probe fit on the train split can never predict such a class, so every one
    of its test images would count as wrong for a reason that has nothing to do with features.
    """
    train = _labels("train_labels", train_labels)
    test = _labels("test_labels", test_labels)
    names = list(class_names)
    for split, labels in (("train", train), ("test", test)):
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(
                f"{split}_labels must lie in 0..{len(names) - 1} (one per class "
                f"name), got {int(labels.min())}..{int(labels.max())}"
            )
    missing = np.setdiff1d(np.unique(test), np.unique(train))
    if missing.size:
        listed = ", ".join(f"{names[c]} ({c})" for c in missing.tolist())
        raise ValueError(
            f"the test split has classes the train split lacks: {listed}; give the "
            "train split images of them or drop them from the test split"
        )


def check_clusters(num_clusters: int, n_images: int, split: str) -> None:
    """Refuse K clusters on a split of fewer than K images (K-means cannot place them)."""
    k = _positive_int("num_clusters", num_clusters)
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 0:
        raise ValueError(f"n_images must be a non-negative integer, got {n_images!r}")
    if k > n_images:
        raise ValueError(
            f"num_clusters K={k} is larger than the {split} split's {n_images} "
            f"images: pass K <= {n_images} or use a larger split"
        )
