"""cdrepro.data.heldout: the held-out split of a prepared dataset, its checks and its file."""

import hashlib
import json

import numpy as np
import pytest

from cdrepro.data.heldout import OFFICIAL, STRATIFIED, SplitError, make_split, read_split, write_split
from cdrepro.data.prepared import load_prepared, meta_path_for, save_prepared
from cdrepro.data.sources import prepare_dataset

SPLIT = {"test_fraction": 0.2, "seed": 42}  # the schema's defaults (evaluate.split)


def prepared(tmp_path, labels, splits=None, name="tiny"):
    """A prepared dataset of ``labels`` (blank 2x2 images); ``splits``: an official split's sizes."""
    labels = np.asarray(labels)
    images = np.zeros((labels.size, 2, 2, 3), np.uint8)
    npz = tmp_path / f"{name}.npz"
    info = {"splits": splits} if splits else {}
    save_prepared(npz, meta_path_for(npz), name, images, labels, [str(c) for c in range(labels.max() + 1)], info)
    return load_prepared(npz)


def test_digits_split_is_stratified_seeded_and_pinned(tmp_path):
    npz = tmp_path / "digits.npz"
    prepare_dataset("digits", {"source": "digits"}, tmp_path, False, npz, meta_path_for(npz))
    data = load_prepared(npz)
    split = make_split(data, SPLIT, 200)
    assert (split.kind, split.train.size, split.test.size) == (STRATIFIED, 1438, 359)
    counts = np.bincount(data.labels, minlength=10)
    np.testing.assert_array_equal(np.bincount(data.labels[split.test], minlength=10), np.floor(0.2 * counts + 0.5))
    # The same on every machine: these indices were drawn once (numpy's PCG64) and must never change.
    digest = hashlib.sha256(split.test.astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == "1b1b132dd8b690cc"
    assert split.test[:5].tolist() == [3, 8, 12, 13, 15]


def test_an_official_split_is_train_first_then_test(tmp_path):
    data = prepared(tmp_path, np.tile([0, 1, 2], 4), splits={"train": 9, "test": 3})
    split = make_split(data, SPLIT, 9)
    assert split.kind == OFFICIAL and (split.test_fraction, split.seed) == (None, None)
    assert split.train.tolist() == list(range(9)) and split.test.tolist() == [9, 10, 11]


def test_the_split_file_round_trips_and_is_refused_for_other_data(tmp_path):
    data = prepared(tmp_path, np.repeat([0, 1, 2], 10))
    split = make_split(data, SPLIT, 5)
    path = tmp_path / "tiny.split.json"
    write_split(path, split)
    again = read_split(path, data)
    np.testing.assert_array_equal(again.train, split.train)
    np.testing.assert_array_equal(again.test, split.test)
    assert json.loads(path.read_text())["n_test"] == 6

    (tmp_path / "other").mkdir()
    other = prepared(tmp_path / "other", np.repeat([0, 1, 2], 11))  # re-prepared: other images
    with pytest.raises(SplitError, match=r"drawn from other data than tiny has now; re-run `cdrepro split --dataset"):
        read_split(path, other)
    with pytest.raises(SplitError, match=r"not found; make it with `cdrepro split --dataset tiny`"):
        read_split(tmp_path / "missing.json", data)
    path.write_text("{")
    with pytest.raises(SplitError, match="not a split file"):
        read_split(path, data)


def test_a_test_split_with_classes_the_train_split_lacks_is_one_line_naming_them(tmp_path):
    # An official split whose train part has no image of class 2.
    data = prepared(tmp_path, [0, 1, 0, 1, 0, 1, 2, 2], splits={"train": 6, "test": 2})
    with pytest.raises(SplitError, match=r"^dataset tiny: the test split has classes the train split lacks: 2 \(2\)"):
        make_split(data, SPLIT, 3)


def test_k_larger_than_the_train_split_is_one_line_naming_the_key(tmp_path):
    data = prepared(tmp_path, np.repeat([0, 1], 10))  # 16 train images at 0.2
    make_split(data, SPLIT, 16)
    with pytest.raises(SplitError, match=r"^evaluate\.knn\.k=17 is larger than dataset tiny's train split of 16 "):
        make_split(data, SPLIT, 17)


def test_more_classes_than_a_splits_images_is_refused(tmp_path):
    # Four classes, a test split of three images: it cannot hold every class.
    data = prepared(tmp_path, [0, 1, 2, 3, 0, 1, 2], splits={"train": 4, "test": 3})
    with pytest.raises(SplitError, match=r"^dataset tiny: num_clusters K=4 is larger than the test split's 3 images"):
        make_split(data, SPLIT, 1)


def test_a_class_of_one_image_cannot_be_split_and_says_which_key(tmp_path):
    data = prepared(tmp_path, [0, 0, 0, 1])
    with pytest.raises(SplitError, match=r"^evaluate\.split on dataset tiny: classes \[1\] have a single image"):
        make_split(data, SPLIT, 1)
