"""Fixtures for the data tests: tiny torchvision archives in the real on-disk formats, no network.

The archives are small but byte-for-byte in the layout torchvision reads (CIFAR python pickles
in a .tar.gz, STL-10 column-major binaries); only the MD5 constants on the torchvision classes
are replaced, so that torchvision's own integrity checks pass for these files and fail for
corrupted ones.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to reach the network fail fast, as on a machine without one."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror("network access is disabled in the data tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@dataclass
class FakeDataset:
    """What a fake source holds, in the order the loader must return it (train first, then test)."""

    download_dir: Path
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    archive: Path | None = None


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def random_images(count: int, side: int, seed: int) -> np.ndarray:
    """Noise images: any transposition or reordering bug changes them."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """CIFAR's pickle layout: one row of 3072 bytes per image, all red, then green, then blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_pickle(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def tar_folder(folder: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDataset:
    """cifar-10-python.tar.gz with 2 images in each of the 5 train batches and the test batch."""
    from torchvision.datasets import CIFAR10

    staging = tmp_path / "staging" / CIFAR10.base_folder
    staging.mkdir(parents=True)
    batch_names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    images = random_images(2 * len(batch_names), 32, seed=10)
    labels = np.arange(len(images), dtype=np.int64) % 10
    for index, batch_name in enumerate(batch_names):
        part = slice(2 * index, 2 * index + 2)
        write_pickle(
            staging / batch_name,
            {
                "batch_label": batch_name,
                "labels": labels[part].tolist(),
                "data": cifar_rows(images[part]),
                "filenames": [f"{batch_name}_{i}.png" for i in range(2)],
            },
        )
    write_pickle(staging / CIFAR10.meta["filename"], {"label_names": CIFAR10_NAMES, "num_vis": 3072})

    download_dir = tmp_path / "downloads"
    archive = download_dir / CIFAR10.filename
    tar_folder(staging, archive)
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5_of(staging / n)] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5_of(staging / n)] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5_of(staging / CIFAR10.meta["filename"])})
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5_of(archive))
    return FakeDataset(download_dir, images, labels, CIFAR10_NAMES, archive)


@pytest.fixture
def fake_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDataset:
    """cifar-100-python.tar.gz: 20 train + 4 test images covering all 20 coarse classes."""
    from torchvision.datasets import CIFAR100

    staging = tmp_path / "staging" / CIFAR100.base_folder
    staging.mkdir(parents=True)
    images = random_images(24, 32, seed=100)
    coarse = (np.arange(24, dtype=np.int64) * 7) % 20  # a permutation of 0..19, then 4 more
    fine = (coarse * 5 + 3) % 100  # deliberately different from the coarse labels
    splits = {"train": slice(0, 20), "test": slice(20, 24)}
    for split_name, part in splits.items():
        write_pickle(
            staging / split_name,
            {
                "batch_label": split_name,
                "fine_labels": fine[part].tolist(),
                "coarse_labels": coarse[part].tolist(),
                "data": cifar_rows(images[part]),
                "filenames": [f"{split_name}_{i}.png" for i in range(part.stop - part.start)],
            },
        )
    coarse_names = [f"superclass_{i:02d}" for i in range(20)]
    write_pickle(
        staging / "meta",
        {
            "fine_label_names": [f"fine_{i:03d}" for i in range(100)],
            "coarse_label_names": coarse_names,
        },
    )

    download_dir = tmp_path / "downloads"
    archive = download_dir / CIFAR100.filename
    tar_folder(staging, archive)
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5_of(staging / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5_of(staging / "test")]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5_of(staging / "meta")})
    monkeypatch.setattr(CIFAR100, "tgz_md5", md5_of(archive))
    return FakeDataset(download_dir, images, coarse, coarse_names, archive)


def stl10_bytes(images: np.ndarray) -> bytes:
    """STL-10's binary layout: per image, each channel stored column by column (column-major)."""
    return images.transpose(0, 3, 2, 1).tobytes()


STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@pytest.fixture
def fake_stl10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDataset:
    """An extracted ``stl10_binary`` folder: 10 train, 3 test and 2 unlabelled 96x96 images."""
    from torchvision.datasets import STL10

    download_dir = tmp_path / "downloads"
    folder = download_dir / STL10.base_folder
    folder.mkdir(parents=True)
    images = random_images(13, 96, seed=96)
    labels = np.concatenate([np.arange(10), [9, 0, 4]]).astype(np.int64)
    (folder / "train_X.bin").write_bytes(stl10_bytes(images[:10]))
    (folder / "train_y.bin").write_bytes((labels[:10] + 1).astype(np.uint8).tobytes())  # 1-based on disk
    (folder / "test_X.bin").write_bytes(stl10_bytes(images[10:]))
    (folder / "test_y.bin").write_bytes((labels[10:] + 1).astype(np.uint8).tobytes())
    (folder / "unlabeled_X.bin").write_bytes(stl10_bytes(random_images(2, 96, seed=7)))
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    monkeypatch.setattr(STL10, "train_list", [[n, md5_of(folder / n)] for n, _ in STL10.train_list])
    monkeypatch.setattr(STL10, "test_list", [[n, md5_of(folder / n)] for n, _ in STL10.test_list])
    return FakeDataset(download_dir, images, labels, STL10_NAMES)
