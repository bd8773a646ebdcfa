"""The prepared dataset: all images of a dataset as one uint8 array file, plus its metadata.

Training keeps every image on the device as uint8 and augments there, so a dataset is decoded
once (``cdrepro prepare``) into ``<name>.npz`` (uncompressed, keys ``images`` (N, H, W, 3) uint8
and ``labels`` (N,) int64) and described by ``<name>.json`` beside it. The JSON is written last,
so its presence marks a complete pair; it records the npz file's SHA-256 so a later step (or a
person) can tell which bytes a result came from.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdrepro.atomic import atomic_path, write_json

FORMAT_VERSION = 1


@dataclass
class PreparedDataset:
    """A prepared dataset in memory; labels are used only for evaluation, never for training."""

    name: str
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, values 0..num_classes-1
    class_names: list[str]
    meta: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def digest(self) -> str:
        """The data's part of a run's identity (``cdrepro.identity``): the array file's SHA-256,
        shortened like the settings digest. The same images, labels and class names give the
        same bytes (``np.savez`` writes no time stamp), so re-preparing unchanged data keeps it."""
        return data_digest(self.meta)


def data_digest(meta: dict[str, Any]) -> str:
    """A prepared dataset's digest from its metadata (``PreparedDataset.digest``)."""
    return str(meta["sha256"])[:16]


def meta_path_for(npz_path: str | Path) -> Path:
    """The metadata file that belongs to ``npz_path``: same folder and stem, suffix ``.json``."""
    return Path(npz_path).with_suffix(".json")


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must have dtype uint8 (values 0..255), got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3) (RGB, channels last), got {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"images must hold at least one non-empty image, got shape {images.shape}")


def _check_class_names(class_names: list[str]) -> None:
    if not class_names:
        raise ValueError("class_names must name at least one class")
    if not all(isinstance(name, str) and name for name in class_names):
        raise ValueError(f"class_names must be non-empty strings, got {class_names!r}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be distinct, got {class_names!r}")


def _checked_labels(labels: np.ndarray, n_images: int, num_classes: int) -> np.ndarray:
    """Return ``labels`` as int64 after checking they index ``num_classes`` classes, each present.

    Every class must occur because evaluation runs K-means with K = number of classes and the
    clustering metrics assume the ground truth has K classes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_images:
        raise ValueError(f"labels must have shape ({n_images},) to match the images, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (one per class name), got {low}..{high}")
    counts = np.bincount(labels, minlength=num_classes)
    absent = [index for index, count in enumerate(counts) if count == 0]
    if absent:
        raise ValueError(f"every class must have at least one image; classes without images: {absent}")
    return labels


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def save_prepared(
    npz_path: str | Path,
    meta_path: str | Path,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    source_info: dict[str, Any],
) -> dict[str, Any]:
    """Validate and write the prepared pair; return the metadata written to ``meta_path``.

    Order matters for crash safety: an existing metadata file is removed first, then the npz
    is written atomically, then the metadata atomically. A crash at any point therefore leaves
    either a complete new pair or no metadata file (which ``load_prepared`` reports as "not
    prepared"), never metadata that describes other bytes. ``meta_path`` should be
    ``meta_path_for(npz_path)``, which is where ``load_prepared`` looks.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    _check_images(images)
    class_names = list(class_names)
    _check_class_names(class_names)
    labels = _checked_labels(labels, images.shape[0], len(class_names))
    npz_path, meta_path = Path(npz_path), Path(meta_path)

    meta_path.unlink(missing_ok=True)
    with atomic_path(npz_path) as tmp:
        # A file handle, not a name: np.savez appends ".npz" to names that lack it.
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images, labels=labels)
        sha256 = _sha256_of_file(tmp)

    counts = np.bincount(labels, minlength=len(class_names))
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "n_images": int(images.shape[0]),
        "image_shape": [int(side) for side in images.shape[1:]],
        "num_classes": len(class_names),
        "class_names": class_names,
        "class_counts": [int(count) for count in counts],
        "source_info": source_info,
        "npz_file": npz_path.name,
        "sha256": sha256,
    }
    write_json(meta_path, meta)
    return json.loads(json.dumps(meta))  # the same plain-JSON view a later load_prepared returns


def _not_prepared(npz_path: Path, missing: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"prepared dataset '{npz_path.stem}' not found or incomplete ({missing} is missing): "
        f"run `cdrepro prepare --dataset {npz_path.stem}` first"
    )


def _damaged(npz_path: Path, why: str) -> ValueError:
    return ValueError(
        f"{npz_path} is damaged ({why}): delete it and run `cdrepro prepare --dataset "
        f"{npz_path.stem}` again (or the workflow, which then prepares it anew)"
    )


def load_prepared(npz_path: str | Path, meta_path: str | Path | None = None) -> PreparedDataset:
    """Read a prepared dataset and its metadata (by default the sibling ``.json``).

    The file's SHA-256 is checked against the metadata's (a fraction of a second for CIFAR,
    seconds for ImageNet-10 at 256 px, against minutes to hours of the step that reads it), so
    a truncated or bit-flipped file is named, never trained on. The arrays are checked against
    the metadata's counts and shape, which catches a pair mixed up by hand.
    """
    npz_path = Path(npz_path)
    meta_path = meta_path_for(npz_path) if meta_path is None else Path(meta_path)
    for required in (meta_path, npz_path):
        if not required.is_file():
            raise _not_prepared(npz_path, required)
    try:
        meta = json.loads(meta_path.read_text())
        expected_sha, expected_shape = meta["sha256"], (meta["n_images"], *meta["image_shape"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(meta_path, f"unreadable metadata: {type(exc).__name__}") from exc
    if _sha256_of_file(npz_path) != expected_sha:
        raise _damaged(npz_path, f"its SHA-256 differs from the one {meta_path.name} recorded")
    try:
        with np.load(npz_path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise _damaged(npz_path, f"{type(exc).__name__}: {exc}") from exc
    if images.shape != expected_shape or labels.shape != (meta["n_images"],):
        raise ValueError(
            f"{npz_path} does not match {meta_path} (images {images.shape}, labels {labels.shape}; "
            f"metadata says {expected_shape}): run `cdrepro prepare --dataset {npz_path.stem}` again"
        )
    return PreparedDataset(
        name=meta["name"], images=images, labels=labels, class_names=list(meta["class_names"]), meta=meta
    )
