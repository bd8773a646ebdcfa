"""cdrepro.data.splits: seeded stratified splits, the long-tail profile, repeated sets, checks."""

import numpy as np
import pytest

from cdrepro.data.splits import (
    check_clusters,
    check_split_classes,
    long_tail_counts,
    long_tail_indices,
    repeated_indices,
    stratified_split,
)


def one_line(info):
    return "\n" not in str(info.value)


# --- stratified_split ------------------------------------------------------------------------


def test_stratified_split_partitions_each_class_in_proportion():
    labels = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])  # digits
    np.random.default_rng(0).shuffle(labels)
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    for c in range(10):
        n_c = int(np.sum(labels == c))
        assert int(np.sum(labels[test] == c)) == int(np.floor(0.2 * n_c + 0.5))


def test_stratified_split_is_fixed_by_its_seed():
    labels = np.repeat([0, 1, 2], 20)
    first = stratified_split(labels, 0.25, seed=3)
    again = stratified_split(labels.copy(), 0.25, seed=3)
    other = stratified_split(labels, 0.25, seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    # Pinned: the split must be the same on every machine and with every numpy that keeps
    # PCG64's stream (Generator.random), not only within one process.
    assert stratified_split(np.repeat([0, 1], 5), 0.4, seed=0)[1].tolist() == PINNED_TEST_IDX


# Computed once (numpy 2.4, PCG64) and kept: a change of the draw order changes every split.
PINNED_TEST_IDX = [2, 3, 6, 8]


def test_every_class_is_in_both_splits():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    train, test = stratified_split(labels, 0.01, seed=0)  # 0.01 * 2 rounds to 0: clipped to 1
    assert set(labels[test]) == {0, 1} and set(labels[train]) == {0, 1}
    train, test = stratified_split(labels, 0.99, seed=0)  # 0.99 * 2 rounds to 2: clipped to 1
    assert set(labels[train]) == {0, 1}


@pytest.mark.parametrize(
    "args, pattern",
    [
        (([0, 0, 1], 0.5, 0), r"^classes \[1\] have a single image"),
        (([0, 0, 1, 1], 0.0, 0), "^test_fraction must be a number strictly between 0 and 1"),
        (([0, 0, 1, 1], 1.0, 0), "^test_fraction must be"),
        (([0, 0, 1, 1], 0.5, -1), "^seed must be a non-negative integer"),
        (([0.0, 1.0], 0.5, 0), "^labels must be integer class labels"),
    ],
)
def test_stratified_split_bad_input_is_one_line(args, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        stratified_split(*args)
    assert one_line(info)


# --- long tail -------------------------------------------------------------------------------

# CIFAR-10-LT from 5,000 images per class: 20,431 images at ratio 10, 12,406 at ratio 100, the
# totals Cao et al. 2019 and Cui et al. 2019 train on.
CIFAR10_LT = {
    1: [5000] * 10,
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
}


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_long_tail_counts_are_cifar10_lt(ratio):
    counts = long_tail_counts(5000, 10, ratio)
    assert counts == CIFAR10_LT[ratio]
    assert sum(counts) == {1: 50000, 10: 20431, 100: 12406}[ratio]


def test_long_tail_counts_edge_cases():
    assert long_tail_counts(7, 1, 100) == [7]
    assert long_tail_counts(100, 2, 100) == [100, 1]  # the tail keeps exactly n / ratio
    assert long_tail_counts(500, 100, 10)[-1] == 50  # CIFAR-100-LT-sized: the last is n / ratio


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_long_tail_indices_keep_exactly_those_counts(ratio):
    labels = np.tile(np.arange(10), 200)  # 200 per class, interleaved
    kept = long_tail_indices(labels, ratio, seed=0)
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=10), long_tail_counts(200, 10, ratio))
    np.testing.assert_array_equal(kept, long_tail_indices(labels, ratio, seed=0))
    if ratio > 1:
        assert not np.array_equal(kept, long_tail_indices(labels, ratio, seed=1))


def test_long_tail_of_an_unbalanced_split_starts_from_its_smallest_class():
    labels = np.repeat([0, 1, 2], [30, 20, 40])
    kept = long_tail_indices(labels, 4, seed=0)
    assert np.bincount(labels[kept]).tolist() == [20, 10, 5]


@pytest.mark.parametrize("ratio", [0.5, 0, -3])
def test_an_imbalance_ratio_below_one_is_one_line_naming_it(ratio):
    for call in (
        lambda: long_tail_counts(5000, 10, ratio),
        lambda: long_tail_indices(np.repeat(np.arange(10), 5), ratio, seed=0),
    ):
        pattern = r"^imbalance_ratio must be >= 1 .*pass e\.g\. 10"
        with pytest.raises(ValueError, match=pattern) as info:
            call()
        assert one_line(info)


def test_an_imbalance_ratio_that_empties_the_tail_is_refused():
    with pytest.raises(
        ValueError,
        match=r"^imbalance_ratio=200 leaves the last class none of its "
        r"100 images: pass imbalance_ratio <= 100",
    ) as info:
        long_tail_counts(100, 10, 200)
    assert one_line(info)
    with pytest.raises(ValueError, match="^imbalance_ratio must be a finite number"):
        long_tail_counts(100, 10, float("inf"))


# --- repeated (correlated) sets --------------------------------------------------------------


def test_repeated_indices():
    assert repeated_indices(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    assert repeated_indices(4, 1).tolist() == [0, 1, 2, 3]
    assert np.bincount(repeated_indices(50, 7)).tolist() == [7] * 50
    with pytest.raises(ValueError, match="^repeats must be a positive integer, got 0"):
        repeated_indices(3, 0)
    with pytest.raises(ValueError, match="^n must be a positive integer"):
        repeated_indices(0, 2)


# --- checks ----------------------------------------------------------------------------------

NAMES = ["plane", "car", "bird", "cat", "deer"]


def test_a_test_split_with_classes_the_train_split_lacks_is_refused_naming_them():
    check_split_classes([0, 1, 2, 3, 4], [4, 3, 0], NAMES)  # fine
    with pytest.raises(
        ValueError,
        match=r"^the test split has classes the train split lacks: "
        r"cat \(3\), deer \(4\);",
    ) as info:
        check_split_classes([0, 1, 2, 2], [0, 3, 4, 4], NAMES)
    assert one_line(info)
    with pytest.raises(ValueError, match=r"^test_labels must lie in 0\.\.4"):
        check_split_classes([0, 1], [7], NAMES)


def test_more_clusters_than_images_is_refused_naming_k_and_the_split():
    check_clusters(10, 10, "test")
    with pytest.raises(
        ValueError,
        match=r"^num_clusters K=100 is larger than the test split's "
        r"50 images: pass K <= 50",
    ) as info:
        check_clusters(100, 50, "test")
    assert one_line(info)
