"""cdrepro.data.training_set: the images a run trains on (every image, the train split, a long
tail of it, repeats), exactly, and the one-line refusals."""

import numpy as np
import pytest

from cdrepro.data.heldout import OFFICIAL, make_split
from cdrepro.data.prepared import load_prepared, meta_path_for, save_prepared
from cdrepro.data.sources import prepare_dataset
from cdrepro.data.splits import long_tail_counts
from cdrepro.data.training_set import (
    TrainingSetError,
    class_counts,
    imbalance_ratio,
    training_indices,
    training_set_of,
)

SPLIT = {"test_fraction": 0.2, "seed": 42}  # evaluate.split's defaults
N_TRAIN, N_TEST = 100, 5  # per class, 10 classes: a CIFAR-10 of 1,050 images, train split first


@pytest.fixture
def official(tmp_path):
    """A prepared dataset with an official split: 1,000 train images (100 a class), then 50 test."""
    labels = np.concatenate([np.repeat(np.arange(10), N_TRAIN), np.repeat(np.arange(10), N_TEST)])
    images = np.zeros((labels.size, 2, 2, 3), np.uint8)
    npz = tmp_path / "cifar10_lt.npz"
    splits = {"train": 10 * N_TRAIN, "test": 10 * N_TEST}
    names = [f"c{c}" for c in range(10)]
    save_prepared(npz, meta_path_for(npz), "cifar10_lt", images, labels, names, {"splits": splits})
    return load_prepared(npz)


def dataset(source="cifar10", **keys):
    return {"source": source, "train_on": "train", **keys}


def test_every_image_unless_the_train_split_is_asked_for(official):
    assert training_set_of({"source": "cifar10", "train_on": "all"}, SPLIT) is None
    np.testing.assert_array_equal(training_indices(official, None), np.arange(len(official)))
    spec = training_set_of(dataset(), SPLIT)
    assert spec == {"split": OFFICIAL}  # an official split ignores evaluate.split
    np.testing.assert_array_equal(training_indices(official, spec), np.arange(10 * N_TRAIN))


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_the_long_tail_keeps_exactly_the_profiles_counts_of_the_train_split_only(official, ratio):
    spec = training_set_of(dataset(long_tail={"imbalance_ratio": ratio, "seed": 3}), SPLIT)
    indices = training_indices(official, spec)
    assert class_counts(official, indices) == long_tail_counts(N_TRAIN, 10, ratio)
    assert indices.max() < 10 * N_TRAIN  # not one test image
    assert imbalance_ratio(spec) == ratio and imbalance_ratio(None) == 1
    np.testing.assert_array_equal(indices, training_indices(official, spec))  # seeded
    # The test split the held-out scores use stays balanced, whatever the training set.
    test = make_split(official, SPLIT, 10).test
    assert np.bincount(official.labels[test]).tolist() == [N_TEST] * 10


def test_repeats_put_each_training_image_r_times(official):
    spec = training_set_of(dataset(long_tail={"imbalance_ratio": 10, "seed": 0}, correlated={"repeats": 3}), SPLIT)
    assert spec is not None and spec["repeats"] == 3
    once = training_indices(official, {**spec, "repeats": 1})
    thrice = training_indices(official, spec)
    assert thrice.size == 3 * once.size and np.array_equal(np.unique(thrice), once)
    assert np.bincount(thrice).max() == 3 and class_counts(official, thrice) == [
        3 * c for c in long_tail_counts(N_TRAIN, 10, 10)
    ]


def test_a_source_without_an_official_split_trains_on_the_stratified_train_part(tmp_path):
    npz = tmp_path / "digits.npz"
    prepare_dataset("digits", {"source": "digits"}, tmp_path, False, npz, meta_path_for(npz))
    data = load_prepared(npz)
    spec = training_set_of(dataset("digits"), SPLIT)
    assert spec == {"split": SPLIT}  # evaluate.split is part of the run's settings here
    np.testing.assert_array_equal(training_indices(data, spec), make_split(data, SPLIT, 200).train)
    other = training_set_of(dataset("digits"), {"test_fraction": 0.5, "seed": 42})
    assert training_indices(data, other).size < training_indices(data, spec).size


def test_a_folder_with_a_test_folder_has_an_official_split():
    folder = {"source": "folder", "path": "data/train", "test_path": "data/test", "train_on": "train"}
    assert training_set_of(folder, SPLIT) == {"split": OFFICIAL}
    del folder["test_path"]
    assert training_set_of(folder, SPLIT) == {"split": SPLIT}


def test_a_ratio_the_data_cannot_give_is_one_line_naming_the_key(official):
    spec = training_set_of(dataset(long_tail={"imbalance_ratio": 1000, "seed": 0}), SPLIT)
    with pytest.raises(TrainingSetError, match=r"^datasets\.cifar10_lt\.long_tail\.imbalance_ratio: .*<= 100") as info:
        training_indices(official, spec)
    assert "\n" not in str(info.value)


def test_params_that_say_official_refuse_data_prepared_without_a_split(tmp_path):
    labels = np.repeat(np.arange(3), 4)
    npz = tmp_path / "old.npz"
    save_prepared(npz, meta_path_for(npz), "old", np.zeros((12, 2, 2, 3), np.uint8), labels, ["a", "b", "c"], {})
    with pytest.raises(TrainingSetError, match=r"^datasets\.old\.train_on: train: .*prepare it again"):
        training_indices(load_prepared(npz), {"split": OFFICIAL})
