"""The prepared array file: round trip, validation, and crash safety."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cdrepro.data import prepared
from cdrepro.data.prepared import PreparedDataset, load_prepared, meta_path_for, save_prepared

CLASS_NAMES = ["cat", "dog", "ship"]


def toy_arrays() -> tuple[np.ndarray, np.ndarray]:
    images = np.random.default_rng(0).integers(0, 256, size=(7, 4, 5, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 2], dtype=np.int64)
    return images, labels


def save_toy(folder: Path, **overrides: Any) -> dict[str, Any]:
    images, labels = toy_arrays()
    arguments: dict[str, Any] = {
        "npz_path": folder / "toy.npz",
        "meta_path": folder / "toy.json",
        "name": "toy",
        "images": images,
        "labels": labels,
        "class_names": CLASS_NAMES,
        "source_info": {"source": "test"},
    }
    return save_prepared(**(arguments | overrides))


def test_round_trip_keeps_arrays_and_describes_them(tmp_path: Path) -> None:
    meta = save_toy(tmp_path)
    images, labels = toy_arrays()

    data = load_prepared(tmp_path / "toy.npz")

    assert isinstance(data, PreparedDataset)
    assert data.name == "toy" and data.class_names == CLASS_NAMES
    assert data.images.dtype == np.uint8 and np.array_equal(data.images, images)
    assert data.labels.dtype == np.int64 and np.array_equal(data.labels, labels)
    assert len(data) == 7 and data.num_classes == 3
    assert data.meta == meta == json.loads((tmp_path / "toy.json").read_text())
    assert meta["n_images"] == 7 and meta["image_shape"] == [4, 5, 3] and meta["num_classes"] == 3
    assert meta["class_counts"] == [2, 2, 3]
    assert meta["source_info"] == {"source": "test"}
    assert meta["sha256"] == hashlib.sha256((tmp_path / "toy.npz").read_bytes()).hexdigest()


def test_npz_is_uncompressed_with_only_images_and_labels(tmp_path: Path) -> None:
    save_toy(tmp_path)
    with zipfile.ZipFile(tmp_path / "toy.npz") as archive:
        assert sorted(archive.namelist()) == ["images.npy", "labels.npy"]
        assert all(member.compress_type == zipfile.ZIP_STORED for member in archive.infolist())


def test_integer_labels_of_any_width_are_stored_as_int64(tmp_path: Path) -> None:
    _, labels = toy_arrays()
    save_toy(tmp_path, labels=labels.astype(np.uint8))
    assert load_prepared(tmp_path / "toy.npz").labels.dtype == np.int64


def test_meta_path_for_is_the_sibling_json() -> None:
    assert meta_path_for(Path("results/data/cifar10.npz")) == Path("results/data/cifar10.json")


INVALID_INPUTS = {
    "float images": ({"images": toy_arrays()[0].astype(np.float32)}, "uint8"),
    "channels first": ({"images": toy_arrays()[0].transpose(0, 3, 1, 2).copy()}, r"\(N, H, W, 3\)"),
    "grey images": ({"images": toy_arrays()[0][..., 0]}, r"\(N, H, W, 3\)"),
    "four channels": ({"images": np.zeros((7, 4, 5, 4), np.uint8)}, r"\(N, H, W, 3\)"),
    "no images": ({"images": np.zeros((0, 4, 5, 3), np.uint8), "labels": np.zeros(0, np.int64)}, "at least one"),
    "label count": ({"labels": np.array([0, 1, 2])}, r"shape \(7,\)"),
    "float labels": ({"labels": toy_arrays()[1].astype(np.float64)}, "integers"),
    "label too large": ({"labels": np.array([0, 1, 2, 0, 1, 2, 3])}, r"0\.\.2"),
    "negative label": ({"labels": np.array([0, 1, 2, 0, 1, 2, -1])}, r"0\.\.2"),
    "class absent": ({"labels": np.array([0, 2, 2, 0, 0, 2, 2])}, r"without images: \[1\]"),
    "duplicate names": ({"class_names": ["cat", "cat", "ship"]}, "distinct"),
    "empty name": ({"class_names": ["cat", "", "ship"]}, "non-empty"),
    "no name": ({"name": ""}, "name"),
}


@pytest.mark.parametrize("case", INVALID_INPUTS)
def test_invalid_inputs_raise_clear_errors_and_write_nothing(tmp_path: Path, case: str) -> None:
    overrides, message = INVALID_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        save_toy(tmp_path, **overrides)
    assert list(tmp_path.iterdir()) == []


def test_invalid_inputs_leave_an_existing_pair_untouched(tmp_path: Path) -> None:
    meta = save_toy(tmp_path)
    with pytest.raises(ValueError):
        save_toy(tmp_path, images=np.zeros((7, 4, 5), np.uint8))
    assert load_prepared(tmp_path / "toy.npz").meta == meta


def failing_savez(handle: Any, **arrays: np.ndarray) -> None:
    handle.write(b"PK\x03\x04 half an archive")
    raise OSError("No space left on device (simulated)")


def test_failure_while_writing_the_npz_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space left"):
        save_toy(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the files nor the temporary file


def test_failed_rewrite_leaves_the_dataset_marked_unprepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old metadata goes first, so a crash cannot pair old metadata with other bytes."""
    save_toy(tmp_path)
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError):
        save_toy(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["toy.npz"]
    with pytest.raises(FileNotFoundError, match="cdrepro prepare --dataset toy"):
        load_prepared(tmp_path / "toy.npz")


def test_failure_before_the_metadata_leaves_the_dataset_unprepared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write_json(path: Any, obj: Any) -> None:
        raise OSError("crash before the metadata (simulated)")

    monkeypatch.setattr(prepared, "write_json", failing_write_json)
    with pytest.raises(OSError, match="simulated"):
        save_toy(tmp_path)
    assert not (tmp_path / "toy.json").exists()
    with pytest.raises(FileNotFoundError, match="cdrepro prepare --dataset toy"):
        load_prepared(tmp_path / "toy.npz")


def test_loading_a_dataset_never_prepared_says_how_to_prepare_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"run `cdrepro prepare --dataset cifar10` first"):
        load_prepared(tmp_path / "cifar10.npz")


def test_loading_arrays_that_do_not_match_the_metadata_fails(tmp_path: Path) -> None:
    save_toy(tmp_path)
    meta_file = tmp_path / "toy.json"
    meta = json.loads(meta_file.read_text())
    meta["n_images"] = 8
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match"):
        load_prepared(tmp_path / "toy.npz")


@pytest.mark.parametrize("damage", ["truncated", "bit flipped", "emptied"])
def test_a_damaged_array_is_named_with_what_to_do_never_loaded(tmp_path: Path, damage: str) -> None:
    """The recorded SHA-256 is checked on every load: the file could pass np.load (a flipped
    pixel) and still not be what was prepared."""
    save_toy(tmp_path)
    npz = tmp_path / "toy.npz"
    data = bytearray(npz.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bit flipped":
        data[-200] ^= 0x01  # inside the image array: np.load alone would not notice
    else:
        data = bytearray()
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{npz} is damaged .*SHA-256.*cdrepro prepare --dataset toy"):
        load_prepared(npz)


def test_unreadable_metadata_is_named(tmp_path: Path) -> None:
    save_toy(tmp_path)
    meta = tmp_path / "toy.json"
    meta.write_text("{")
    with pytest.raises(ValueError, match=rf"{meta} is damaged .*cdrepro prepare --dataset toy"):
        load_prepared(tmp_path / "toy.npz")
