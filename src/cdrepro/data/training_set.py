"""Which images a run trains on (``datasets.<name>.train_on``, ``long_tail``, ``correlated``).

* ``train_on: all`` (the default): every image of the prepared dataset, train and test split,
  as CC's and CD's protocol does for the paper's tables. The run's ``training_set`` is None.
* ``train_on: train``: the held-out split's train part only (``cdrepro.data.heldout``: the
  official train split, or the stratified one that ``evaluate.split`` draws), so the test
  images are held out from training as well as from the labels.
* ``long_tail: {imbalance_ratio, seed}``: of that train part, the exponential long-tail subset
  (``cdrepro.data.splits.long_tail_indices``); the test split, and so every held-out score,
  stays balanced.
* ``correlated: {repeats: r}``: each of those images r times (``repeated_indices``), each copy
  augmented on its own at every step. An epoch is a pass over this set, so it is r times longer.

``training_set_of`` turns a dataset's params into the run's ``training_set`` (a part of its
settings, so of its digest); ``training_indices`` turns that and the prepared data into the
indices training draws its batches from. Both are cheap (labels only), so training needs no
split file: it computes the same train part that ``cdrepro split`` writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cdrepro.config import OFFICIAL_SOURCES
from cdrepro.data.heldout import OFFICIAL, SplitError, split_indices
from cdrepro.data.prepared import PreparedDataset
from cdrepro.data.splits import long_tail_indices, repeated_indices

TRAINING_SET_KEYS = ("train_on", "long_tail", "correlated")
"""A dataset's keys that pick the images trained on; the prepared file does not depend on them."""


class TrainingSetError(ValueError):
    """A training set that cannot be drawn from the prepared data; names the params key."""


def training_set_of(dataset: dict[str, Any], split_params: dict[str, Any]) -> dict[str, Any] | None:
    """A run's ``training_set`` from its dataset's params (defaults filled) and ``evaluate.split``:
    None for every image, else ``{"split": "official" | {test_fraction, seed}}`` plus
    ``long_tail: {imbalance_ratio, seed}`` and ``repeats`` where given. Only what changes the
    indices is recorded: an official split ignores ``evaluate.split``, so changing it retrains
    nothing there."""
    if dataset["train_on"] == "all":
        return None
    split: str | dict[str, Any] = OFFICIAL
    if dataset["source"] not in OFFICIAL_SOURCES and "test_path" not in dataset:
        split = {"test_fraction": float(split_params["test_fraction"]), "seed": int(split_params["seed"])}
    spec: dict[str, Any] = {"split": split}
    if "long_tail" in dataset:
        tail = dataset["long_tail"]
        spec["long_tail"] = {"imbalance_ratio": float(tail["imbalance_ratio"]), "seed": int(tail["seed"])}
    if "correlated" in dataset:
        spec["repeats"] = int(dataset["correlated"]["repeats"])
    return spec


def imbalance_ratio(training_set: dict[str, Any] | None) -> float:
    """The head-to-tail ratio a run trained at: 1 for a balanced (or unsubsampled) set."""
    if not training_set or "long_tail" not in training_set:
        return 1.0
    return float(training_set["long_tail"]["imbalance_ratio"])


def _train_part(data: PreparedDataset, split: str | dict[str, Any]) -> np.ndarray:
    """The held-out split's train part, as ``cdrepro split`` draws it for the evaluation."""
    official = split == OFFICIAL
    recorded = "splits" in data.meta["source_info"]
    if official != recorded:
        raise TrainingSetError(
            f"datasets.{data.name}.train_on: train: the params' source has "
            f"{'an official' if official else 'no official'} split, the prepared data "
            f"{'has none' if official else 'has one'}; prepare it again (`cdrepro prepare --dataset {data.name}`)"
        )
    try:
        _, train, _ = split_indices(data, {} if isinstance(split, str) else split)
    except SplitError as exc:
        raise TrainingSetError(f"datasets.{data.name}.train_on: {exc}") from exc
    return train


def training_indices(data: PreparedDataset, training_set: dict[str, Any] | None) -> np.ndarray:
    """(n,) int64 indices into ``data``'s images that training draws from (see the module's
    docstring); every image, ascending, for ``training_set`` None. A ratio the data cannot give
    is a TrainingSetError naming ``datasets.<name>.long_tail.imbalance_ratio``."""
    if training_set is None:
        return np.arange(len(data), dtype=np.int64)
    indices = _train_part(data, training_set["split"])  # (n_train,) ascending
    if "long_tail" in training_set:
        tail = training_set["long_tail"]
        try:
            kept = long_tail_indices(data.labels[indices], tail["imbalance_ratio"], tail["seed"])
        except ValueError as exc:
            raise TrainingSetError(f"datasets.{data.name}.long_tail.imbalance_ratio: {exc}") from exc
        indices = indices[kept]
    return indices[repeated_indices(indices.size, training_set.get("repeats", 1))]


def class_counts(data: PreparedDataset, indices: np.ndarray) -> list[int]:
    """Images per class (with repeats) of a training set, class 0 first: what train.json records."""
    return np.bincount(data.labels[indices], minlength=data.num_classes).tolist()
