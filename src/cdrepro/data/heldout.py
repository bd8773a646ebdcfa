"""A prepared dataset's held-out split: which images form the kNN bank and the linear probe's
training set (train), and which are scored (test). Written once per dataset by ``cdrepro split``
as ``<results_dir>/<profile>/data/<dataset>.split.json``; read by ``cdrepro evaluate``.

Where the split comes from:

* **official**: torchvision's CIFAR-10, CIFAR-100(-20) and STL-10, and a folder source with a
  ``test_path``, store their train split first, then their test split, and record the two
  sizes in the prepared metadata (``source_info.splits``): train is the first ``n_train``
  images, test the rest.
* **stratified**: every other source (digits, imagenet10, a folder without ``test_path``) gets
  ``cdrepro.data.splits.stratified_split`` with ``evaluate.split``'s ``test_fraction`` and
  ``seed``: fixed, seeded, the same on every machine.

The K-means scores use every image, and so does training by default, as CC's and CD's protocol
does (the paper's tables): the test images are then held out from the labels (the bank and the
probe never see theirs), not from self-supervised training. A dataset with ``train_on: train``
trains on this split's train part only (``cdrepro.data.training_set``; docs/claims.md).

The file records the data digest it was drawn from; ``read_split`` refuses it for other data.
Every check runs before anything is written (``make_split``), each a one-line ``SplitError``
naming the params key to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdrepro.atomic import write_json
from cdrepro.data.prepared import PreparedDataset
from cdrepro.data.splits import check_clusters, check_split_classes, stratified_split

OFFICIAL, STRATIFIED = "official", "stratified"


class SplitError(ValueError):
    """A held-out split that cannot be evaluated, or a split file that is not this data's."""


@dataclass(frozen=True)
class HeldOutSplit:
    dataset: str
    data_digest: str  # the prepared data it indexes (``PreparedDataset.digest``)
    kind: str  # OFFICIAL or STRATIFIED
    train: np.ndarray  # (n_train,) int64, ascending
    test: np.ndarray  # (n_test,) int64, ascending, disjoint from train
    test_fraction: float | None  # STRATIFIED only
    seed: int | None  # STRATIFIED only

    def record(self) -> dict[str, Any]:
        """The split file's content: the test indices (train is every other image)."""
        return {
            "dataset": self.dataset,
            "data_digest": self.data_digest,
            "kind": self.kind,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "n_train": int(self.train.size),
            "n_test": int(self.test.size),
            "test_indices": self.test.tolist(),
        }

    def summary(self) -> dict[str, Any]:
        """What metrics.json says of the split it was scored on (no indices)."""
        return {key: value for key, value in self.record().items() if key not in ("test_indices", "data_digest")}


def _official_sizes(data: PreparedDataset) -> tuple[int, int] | None:
    """(n_train, n_test) of a source with an official test split, from its prepared metadata."""
    sizes = data.meta["source_info"].get("splits")
    if not sizes:
        return None
    n_train, n_test = int(sizes["train"]), int(sizes["test"])
    if n_train + n_test != len(data):
        raise SplitError(
            f"dataset {data.name}: its metadata's splits ({n_train} + {n_test}) do not add up to its "
            f"{len(data)} images: prepare it again (`cdrepro prepare --dataset {data.name}`)"
        )
    return n_train, n_test


def split_indices(data: PreparedDataset, split_params: dict[str, Any]) -> tuple[str, np.ndarray, np.ndarray]:
    """``(kind, train, test)``: the official split where the data records one, else the
    stratified split that ``split_params`` (``evaluate.split``) draws. Unchecked (``make_split``
    checks); training's own subset (``cdrepro.data.training_set``) starts from the same train."""
    sizes = _official_sizes(data)
    if sizes is not None:
        n_train, n_test = sizes
        return OFFICIAL, np.arange(n_train, dtype=np.int64), np.arange(n_train, n_train + n_test, dtype=np.int64)
    try:
        train, test = stratified_split(data.labels, split_params["test_fraction"], split_params["seed"])
    except ValueError as exc:
        raise SplitError(f"evaluate.split on dataset {data.name}: {exc}") from exc
    return STRATIFIED, train, test


def _check(data: PreparedDataset, train: np.ndarray, test: np.ndarray, knn_k: int) -> None:
    """Refuse a split the kNN or the probe cannot score, naming what to change."""
    try:
        check_split_classes(data.labels[train], data.labels[test], data.class_names)
        for name, part in (("train", train), ("test", test)):
            check_clusters(data.num_classes, int(part.size), name)
    except ValueError as exc:
        raise SplitError(f"dataset {data.name}: {exc}") from exc
    if knn_k > train.size:
        raise SplitError(
            f"evaluate.knn.k={knn_k} is larger than dataset {data.name}'s train split of {train.size} "
            f"images (the kNN bank): set evaluate.knn.k <= {train.size}"
        )


def make_split(data: PreparedDataset, split_params: dict[str, Any], knn_k: int) -> HeldOutSplit:
    """The dataset's held-out split, checked. ``split_params``: the params' ``evaluate.split``;
    ``knn_k``: ``evaluate.knn.k`` (the bank must hold at least that many images)."""
    kind, train, test = split_indices(data, split_params)
    _check(data, train, test, knn_k)
    stratified = kind == STRATIFIED
    return HeldOutSplit(
        dataset=data.name,
        data_digest=data.digest,
        kind=kind,
        train=train,
        test=test,
        test_fraction=float(split_params["test_fraction"]) if stratified else None,
        seed=int(split_params["seed"]) if stratified else None,
    )


def write_split(path: str | Path, split: HeldOutSplit) -> None:
    write_json(path, split.record())


def _rerun(dataset: str) -> str:
    return f"re-run `cdrepro split --dataset {dataset}` (or the workflow)"


def read_split(path: str | Path, data: PreparedDataset) -> HeldOutSplit:
    """The split file of ``data``; SplitError (one line) if it is missing, damaged, or drawn
    from other data than ``data`` (a re-prepared dataset)."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: not found; make it with `cdrepro split --dataset {data.name}`")
    try:
        record = json.loads(path.read_text())
        test = np.asarray(record["test_indices"], dtype=np.int64)  # (n_test,)
        kind, digest = str(record["kind"]), str(record["data_digest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SplitError(f"{path}: not a split file ({type(exc).__name__}: {exc}); {_rerun(data.name)}") from exc
    if digest != data.digest:
        raise SplitError(f"{path} was drawn from other data than {data.name} has now; {_rerun(data.name)}")
    if test.ndim != 1 or (test.size and (test.min() < 0 or test.max() >= len(data))):
        raise SplitError(f"{path}: test indices outside the dataset's {len(data)} images; {_rerun(data.name)}")
    train = np.setdiff1d(np.arange(len(data), dtype=np.int64), test)  # (n_train,) ascending
    return HeldOutSplit(data.name, digest, kind, train, np.unique(test), record["test_fraction"], record["seed"])
