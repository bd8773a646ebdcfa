"""Dataset sources, through torchvision's real code paths on tiny archives; no network."""

from __future__ import annotations

import logging
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from cdrepro.data.prepared import load_prepared
from cdrepro.data.sources import (
    IMAGENET10_SYNSETS,
    DatasetUnavailable,
    ImageFolderError,
    load_source,
    prepare_dataset,
)

if TYPE_CHECKING:  # the fixtures' return type; conftest is not imported at run time
    from conftest import FakeDataset

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR10_SAMPLE = REPO_ROOT / "../shared/data/cifar10-sample"


def settings(source: str, **extra: Any) -> dict[str, Any]:
    return {"source": source, "color_strength": 0.5, "blur": False, **extra}


def assert_same_data(raw: Any, expected: FakeDataset) -> None:
    assert raw.images.dtype == np.uint8 and raw.images.flags["C_CONTIGUOUS"]
    assert raw.labels.dtype == np.int64
    assert np.array_equal(raw.images, expected.images)  # pixel-exact, train split first
    assert np.array_equal(raw.labels, expected.labels)
    assert raw.class_names == expected.class_names


# --- digits --------------------------------------------------------------------------------------


def test_digits_are_rgb_uint8_scaled_to_full_range() -> None:
    raw = load_source(settings("digits"), Path("unused"), download=False)
    assert raw.images.shape == (1797, 8, 8, 3) and raw.images.dtype == np.uint8
    assert raw.images.min() == 0 and raw.images.max() == 255
    assert np.array_equal(raw.images[..., 0], raw.images[..., 2])  # grey replicated to 3 channels
    assert raw.labels.dtype == np.int64 and sorted(set(raw.labels.tolist())) == list(range(10))
    assert raw.class_names == [str(digit) for digit in range(10)]


def test_prepare_digits_writes_a_loadable_pair(tmp_path: Path) -> None:
    meta = prepare_dataset(
        "digits", settings("digits"), tmp_path / "downloads", False, tmp_path / "digits.npz", tmp_path / "digits.json"
    )
    data = load_prepared(tmp_path / "digits.npz")
    assert meta["n_images"] == len(data) == 1797 and data.num_classes == 10
    assert data.meta["source_info"]["source"] == "digits"


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown dataset source 'mnist'"):
        load_source(settings("mnist"), Path("unused"), download=False)


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_from_a_hand_placed_archive_without_downloading(fake_cifar10: FakeDataset) -> None:
    raw = load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)
    assert_same_data(raw, fake_cifar10)
    assert raw.source_info["splits"] == {"train": 10, "test": 2}
    assert raw.source_info["archive"] == "cifar-10-python.tar.gz"


def test_cifar10_reads_extracted_files_once_the_archive_is_gone(fake_cifar10: FakeDataset) -> None:
    load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)
    assert fake_cifar10.archive is not None
    fake_cifar10.archive.unlink()
    raw = load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)
    assert_same_data(raw, fake_cifar10)


def test_cifar100_20_uses_the_coarse_superclasses(fake_cifar100: FakeDataset) -> None:
    raw = load_source(settings("cifar100_20"), fake_cifar100.download_dir, download=False)
    assert_same_data(raw, fake_cifar100)
    assert len(raw.class_names) == 20


def test_prepare_cifar100_20_stores_twenty_classes(fake_cifar100: FakeDataset, tmp_path: Path) -> None:
    meta = prepare_dataset(
        "cifar100_20",
        settings("cifar100_20"),
        fake_cifar100.download_dir,
        False,
        tmp_path / "out" / "cifar100_20.npz",
        tmp_path / "out" / "cifar100_20.json",
    )
    assert meta["num_classes"] == 20 and meta["n_images"] == 24 and sum(meta["class_counts"]) == 24


def test_cifar100_uses_the_hundred_fine_classes_of_the_same_archive(fake_cifar100: FakeDataset) -> None:
    from torchvision.datasets import CIFAR100

    raw = load_source(settings("cifar100"), fake_cifar100.download_dir, download=False)
    coarse = load_source(settings("cifar100_20"), fake_cifar100.download_dir, download=False)
    assert np.array_equal(raw.images, fake_cifar100.images)  # the same images, train split first
    assert np.array_equal(raw.labels, (fake_cifar100.labels * 5 + 3) % 100)  # the fixture's fine labels
    assert raw.class_names == [f"fine_{i:03d}" for i in range(100)] and len(coarse.class_names) == 20
    assert raw.source_info["splits"] == {"train": 20, "test": 4}
    assert raw.source_info["archive"] == CIFAR100.filename and raw.source_info["source"] == "cifar100"


def test_missing_archive_without_download_names_the_file_and_folder(tmp_path: Path) -> None:
    from torchvision.datasets import CIFAR10

    download_dir = tmp_path / "downloads"
    with pytest.raises(DatasetUnavailable) as caught:
        load_source(settings("cifar10"), download_dir, download=False)
    message = str(caught.value)
    assert "cifar-10-python.tar.gz" in message and str(download_dir) in message
    assert CIFAR10.url in message and "MD5" in message


def test_corrupt_archive_is_reported_as_a_checksum_mismatch(fake_cifar10: FakeDataset) -> None:
    assert fake_cifar10.archive is not None
    data = bytearray(fake_cifar10.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fake_cifar10.archive.write_bytes(bytes(data))
    with pytest.raises(DatasetUnavailable, match=r"corrupt or incomplete \(checksum mismatch\): delete it"):
        load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)


def test_corrupt_extracted_file_is_reported_as_a_checksum_mismatch(fake_cifar10: FakeDataset) -> None:
    load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)
    meta_file = fake_cifar10.download_dir / "cifar-10-batches-py" / "batches.meta"
    meta_file.write_bytes(meta_file.read_bytes() + b"junk")  # torchvision checks it while loading
    with pytest.raises(DatasetUnavailable, match="checksum mismatch"):
        load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)


def test_network_failure_says_where_to_place_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR100

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (simulated)")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    download_dir = tmp_path / "downloads"
    with pytest.raises(DatasetUnavailable) as caught:
        load_source(settings("cifar100_20"), download_dir, download=True)
    message = str(caught.value)
    assert "could not download" in message and CIFAR100.url in message
    assert str(download_dir / "cifar-100-python.tar.gz") in message and "MD5" in message


def test_corrupt_download_is_reported_as_a_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import utils

    def truncated_download(url: str, filename: Any, chunk_size: int = 0) -> None:
        Path(filename).write_bytes(b"the first bytes of an archive, then the connection dropped")

    monkeypatch.setattr(utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(utils, "_urlretrieve", truncated_download)
    with pytest.raises(DatasetUnavailable, match=r"cifar-10-python\.tar\.gz.*checksum mismatch"):
        load_source(settings("cifar10"), tmp_path / "downloads", download=True)


def test_failed_prepare_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DatasetUnavailable):
        prepare_dataset(
            "cifar10", settings("cifar10"), tmp_path / "downloads", False, out / "cifar10.npz", out / "cifar10.json"
        )
    assert not out.exists() or list(out.iterdir()) == []


# --- STL-10 --------------------------------------------------------------------------------------


def test_stl10_uses_train_and_test_only_as_nhwc(fake_stl10: FakeDataset) -> None:
    raw = load_source(settings("stl10"), fake_stl10.download_dir, download=False)
    assert raw.images.shape == (13, 96, 96, 3)  # the 2 unlabelled images are left out
    assert_same_data(raw, fake_stl10)
    assert raw.source_info["splits"] == {"train": 10, "test": 3}


def test_stl10_without_class_names_file_uses_the_standard_names(fake_stl10: FakeDataset) -> None:
    (fake_stl10.download_dir / "stl10_binary" / "class_names.txt").unlink()
    raw = load_source(settings("stl10"), fake_stl10.download_dir, download=False)
    assert raw.class_names == fake_stl10.class_names


# --- ImageNet-10 ---------------------------------------------------------------------------------


def write_striped_jpeg(path: Path) -> None:
    """A 40x20 blue image, its leftmost 5 columns green: squashing keeps the stripe, a crop would not."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[..., 2] = 255
    pixels[:, :5] = (0, 255, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture
def imagenet10_tree(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet10"
    for synset in IMAGENET10_SYNSETS:
        for index in range(2):
            write_striped_jpeg(root / synset / f"{synset}_{index}.JPEG")
    return root


def test_imagenet10_squashes_each_image_to_store_size(imagenet10_tree: Path) -> None:
    with pytest.warns(UserWarning, match="expected 1300 images per synset"):
        raw = load_source(settings("imagenet10", path=str(imagenet10_tree), store_size=16), Path("unused"), False)
    assert raw.images.shape == (20, 16, 16, 3) and raw.images.dtype == np.uint8
    assert raw.labels.tolist() == [label for label in range(10) for _ in range(2)]
    assert raw.class_names == list(IMAGENET10_SYNSETS)
    assert raw.source_info["synset_names"]["n02056570"] == "king penguin"
    green_edge, blue_rest = raw.images[:, :, :2].astype(int), raw.images[:, :, 3:].astype(int)
    assert (green_edge[..., 1] > 150).all() and (green_edge[..., 2] < 100).all()
    assert (blue_rest[..., 2] > 150).all() and (blue_rest[..., 1] < 100).all()


def test_imagenet10_store_size_defaults_to_256(imagenet10_tree: Path) -> None:
    for synset in list(IMAGENET10_SYNSETS)[1:]:
        (imagenet10_tree / synset / f"{synset}_1.JPEG").unlink()
    with pytest.warns(UserWarning):
        raw = load_source(settings("imagenet10", path=str(imagenet10_tree)), Path("unused"), False)
    assert raw.images.shape == (11, 256, 256, 3)


def test_imagenet10_missing_folder_explains_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"<path>/<synset>/<image>\.JPEG.*n02056570.*n07747607"):
        load_source(settings("imagenet10", path=str(tmp_path / "nowhere")), Path("unused"), False)


def test_imagenet10_missing_synset_is_named(imagenet10_tree: Path) -> None:
    shutil.rmtree(imagenet10_tree / "n04254680")
    with pytest.raises(ImageFolderError, match="missing synset folders: n04254680"):
        load_source(settings("imagenet10", path=str(imagenet10_tree)), Path("unused"), False)


def test_imagenet10_extra_folder_is_named(imagenet10_tree: Path) -> None:
    (imagenet10_tree / "n01440764").mkdir()
    with pytest.raises(ImageFolderError, match="unexpected folders: n01440764"):
        load_source(settings("imagenet10", path=str(imagenet10_tree)), Path("unused"), False)


def test_imagenet10_empty_synset_is_named(imagenet10_tree: Path) -> None:
    for image in (imagenet10_tree / "n02690373").iterdir():
        image.unlink()
    with pytest.raises(ImageFolderError, match="without images: n02690373"):
        load_source(settings("imagenet10", path=str(imagenet10_tree)), Path("unused"), False)


# --- generic folders -----------------------------------------------------------------------------


def test_folder_of_real_cifar10_images() -> None:
    if not CIFAR10_SAMPLE.is_dir():
        pytest.skip(f"{CIFAR10_SAMPLE} is absent (only developers' machines and CI have the shared sample)")
    raw = load_source(settings("folder", path=str(CIFAR10_SAMPLE), store_size=32), Path("unused"), False)
    assert raw.images.shape == (2000, 32, 32, 3) and raw.images.dtype == np.uint8
    assert raw.class_names == sorted(folder.name for folder in CIFAR10_SAMPLE.iterdir())
    assert np.bincount(raw.labels).tolist() == [200] * 10
    with Image.open(CIFAR10_SAMPLE / "airplane" / "0000.jpg") as first:
        assert np.array_equal(raw.images[0], np.asarray(first.convert("RGB")))  # 32 -> 32 changes nothing


def write_png(path: Path, colour: tuple[int, int, int], size: int | None = None) -> None:
    """A one-colour PNG: 12 x 9 pixels, or ``size`` x ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (12, 9) if size is None else (size, size)
    Image.fromarray(np.full((*shape, 3), colour, np.uint8)).save(path)


def test_folder_takes_sorted_class_folders_and_only_image_files(tmp_path: Path) -> None:
    write_png(tmp_path / "b_class" / "one.PNG", (0, 0, 255))
    write_png(tmp_path / "b_class" / "two.png", (0, 0, 254))
    write_png(tmp_path / "a_class" / "x.png", (255, 0, 0))
    (tmp_path / "a_class" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    raw = load_source(settings("folder", path=str(tmp_path), store_size=8), Path("unused"), False)
    assert raw.class_names == ["a_class", "b_class"] and raw.labels.tolist() == [0, 1, 1]
    assert raw.images[0, ..., 0].min() == 255 and raw.images[1, ..., 2].min() == 255


def test_a_folder_is_stored_at_its_images_own_size_unless_store_size_says(tmp_path: Path) -> None:
    """32 px images stay 32 px (not blown up to 256: 64 times the bytes, and the raw-pixel
    baseline would cluster upscaled pixels); mixed sizes take the profile's evaluation size."""
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        for i in range(2):
            path = tmp_path / "same" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(path)
    assert load_source(settings("folder", path=str(tmp_path / "same")), Path("unused"), False).images.shape == (
        4,
        32,
        32,
        3,
    )
    assert load_source(
        settings("folder", path=str(tmp_path / "same"), store_size=16), Path("unused"), False, eval_size=64
    ).images.shape == (4, 16, 16, 3)
    write_png(tmp_path / "mixed" / "a" / "x.png", (1, 2, 3))  # 9 x 12
    write_png(tmp_path / "mixed" / "b" / "y.png", (4, 5, 6))
    write_png(tmp_path / "mixed" / "b" / "z.png", (7, 8, 9))
    mixed = load_source(settings("folder", path=str(tmp_path / "mixed")), Path("unused"), False, eval_size=24)
    assert mixed.images.shape == (3, 24, 24, 3) and mixed.source_info["store_size"] == 24


def test_folder_empty_class_is_named(tmp_path: Path) -> None:
    write_png(tmp_path / "full" / "x.png", (1, 2, 3))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ImageFolderError, match=r"class folder .*empty holds no images"):
        load_source(settings("folder", path=str(tmp_path)), Path("unused"), False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_is_named(tmp_path: Path, damage: str) -> None:
    write_png(tmp_path / "cat" / "ok.png", (1, 2, 3))
    write_png(tmp_path / "cat" / "ok2.png", (1, 2, 3))
    bad = tmp_path / "dog" / "bad.jpg"
    write_striped_jpeg(bad)
    content = bad.read_bytes()
    bad.write_bytes(b"this is not a JPEG" if damage == "garbage" else content[: len(content) // 2])
    with pytest.raises(ImageFolderError, match=f"cannot read image {bad}"):
        load_source(settings("folder", path=str(tmp_path), store_size=8), Path("unused"), False)


def test_folder_without_path_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="needs a 'path'"):
        load_source(settings("folder"), Path("unused"), False)


# --- archive extraction is path-traversal safe ---------------------------------------------------


def add_member(tar: Any, name: str, kind: str = "file", target: str = "", data: bytes = b"evil") -> None:
    import io
    import tarfile

    member = tarfile.TarInfo(name)
    if kind == "file":
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
        return
    member.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE}[kind]
    member.linkname = target
    tar.addfile(member)


def evil_cifar10_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evil: Any) -> Path:
    """cifar-10-python.tar.gz (the name torchvision expects, its MD5 patched to match) with one
    ordinary member and then ``evil(tar)``'s."""
    import tarfile

    from conftest import md5_of  # tests/data/conftest.py
    from torchvision.datasets import CIFAR10

    download_dir = tmp_path / "downloads"
    download_dir.mkdir()
    archive = download_dir / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/readme.html", data=b"harmless")
        evil(tar)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5_of(archive))
    return download_dir


EVIL_MEMBERS = {
    "dot-dot": (lambda tar, out: add_member(tar, "cifar-10-batches-py/../../evil"), "'..' component"),
    "absolute": (lambda tar, out: add_member(tar, str(out / "evil")), "absolute path"),
    "symlink out, then a file through it": (
        lambda tar, out: (
            add_member(tar, "cifar-10-batches-py/out", "symlink", "../.."),
            add_member(tar, "cifar-10-batches-py/out/evil"),
        ),
        "outside the folder",
    ),
    "hard link out": (
        lambda tar, out: add_member(tar, "cifar-10-batches-py/pw", "hardlink", "../evil"),
        "outside the folder",
    ),
    "device file": (lambda tar, out: add_member(tar, "cifar-10-batches-py/dev", "device"), "device"),
}


@pytest.mark.parametrize("kind", list(EVIL_MEMBERS))
def test_an_archive_with_an_unsafe_member_is_refused_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    add_evil, reason = EVIL_MEMBERS[kind]
    download_dir = evil_cifar10_archive(tmp_path, monkeypatch, lambda tar: add_evil(tar, tmp_path))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetUnavailable, match=r"refused, nothing was extracted") as caught:
        load_source(settings("cifar10"), download_dir, download=False)
    assert reason in str(caught.value) and "cifar-10-python.tar.gz" in str(caught.value)
    assert not (tmp_path / "evil").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_safe_extract_extracts_an_ordinary_archive(tmp_path: Path) -> None:
    import tarfile

    from cdrepro.data.sources import safe_extract

    archive = tmp_path / "ok.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_member(tar, "top/a.bin", data=b"A")
        add_member(tar, "top/sub/b.bin", data=b"B")
        add_member(tar, "top/sub/link", "symlink", "../a.bin")  # a link that stays inside is fine
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/top/sub/b.bin").read_bytes() == b"B"
    assert (tmp_path / "out/top/sub/link").read_bytes() == b"A"


def test_a_truncated_archive_with_a_matching_md5_is_reported_as_corrupt(
    fake_cifar10: FakeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import md5_of
    from torchvision.datasets import CIFAR10

    assert fake_cifar10.archive is not None
    data = fake_cifar10.archive.read_bytes()
    fake_cifar10.archive.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5_of(fake_cifar10.archive))  # only the tar reader can tell
    with pytest.raises(DatasetUnavailable, match="checksum mismatch"):
        load_source(settings("cifar10"), fake_cifar10.download_dir, download=False)


def test_images_per_class_keeps_the_first_files_of_each_class_in_sorted_order(tmp_path: Path) -> None:
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        for i in (2, 0, 1):
            write_png(tmp_path / name / f"{i}.png", (colour[0], i, colour[2]))
    raw = load_source(settings("folder", path=str(tmp_path), images_per_class=2), Path("unused"), False)
    assert raw.labels.tolist() == [0, 0, 1, 1]
    assert raw.images[:, 0, 0, 1].tolist() == [0, 1, 0, 1]  # 0.png and 1.png of each class
    assert raw.source_info["images_per_class"] == 2
    with pytest.raises(ImageFolderError, match=r"holds 3 images, fewer than images_per_class 4"):
        load_source(settings("folder", path=str(tmp_path), images_per_class=4), Path("unused"), False)


# --- high bit depths, oversized images, a file as root, one image per class (issue 19) ----------


def png16_bytes(samples: np.ndarray, colour_type: int) -> bytes:
    """A minimal 16-bit PNG of ``samples`` (H, W[, C]) uint16: PIL writes 16-bit grey only, so
    grey+alpha (4), RGB (2) and RGBA (6) are written here, by the PNG specification."""
    import struct
    import zlib

    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG16_KINDS = {"grey": (1, None), "grey+alpha": (2, 4), "rgb": (3, 2), "rgba": (4, 6)}  # channels, colour type


def write_16_and_8_bit_folders(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """The same random pictures (2 classes x 2, 10 px) as 8-bit PNGs and as 16-bit ones (v * 257)."""
    channels, colour_type = PNG16_KINDS[kind]
    pictures = np.random.default_rng(16).integers(0, 256, size=(4, 10, 10, channels), dtype=np.uint8)
    if channels == 1:
        pictures = pictures[..., 0]
    for index, picture in enumerate(pictures):
        relative = Path("ab"[index // 2]) / f"{index}.png"
        for folder in ("eight", "sixteen"):
            (tmp_path / folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(tmp_path / "eight" / relative)  # L, LA, RGB or RGBA
        wide = picture.astype(np.uint16) * 257
        if colour_type is None:
            Image.fromarray(wide).save(tmp_path / "sixteen" / relative)  # PIL's I;16
        else:
            (tmp_path / "sixteen" / relative).write_bytes(png16_bytes(wide, colour_type))
        assert (tmp_path / "sixteen" / relative).read_bytes()[24] == 16  # IHDR bit depth: really 16-bit
    return tmp_path / "eight", tmp_path / "sixteen"


@pytest.mark.parametrize("kind", list(PNG16_KINDS))
def test_a_16_bit_png_is_stored_as_the_8_bit_image_it_was_made_from(tmp_path: Path, kind: str) -> None:
    """Before the fix, 16-bit grey PNGs (PIL's I;16) were clipped to 255: blank white data."""
    eight, sixteen = write_16_and_8_bit_folders(tmp_path, kind)
    for store_size in ({}, {"store_size": 7}):  # the images' own 10 px, and resized
        stored = {}
        for folder in (eight, sixteen):
            out = tmp_path / "out" / f"{folder.name}{store_size}"
            prepare_dataset(
                "mine",
                settings("folder", path=str(folder), **store_size),
                "unused",
                False,
                out / "mine.npz",
                out / "mine.json",
            )
            stored[folder.name] = load_prepared(out / "mine.npz").images
        assert np.array_equal(stored["sixteen"], stored["eight"])
        assert len(np.unique(stored["sixteen"])) > 50  # the random pictures, not a blank
    with Image.open(eight / "a" / "0.png") as first:  # the 8-bit store is PIL's own reading
        expected = first.convert("RGB").resize((7, 7), Image.Resampling.BILINEAR)
    assert np.array_equal(stored["eight"][0], np.asarray(expected))


def test_16_bit_grey_keeps_its_high_byte_as_pil_does_for_16_bit_rgb(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 32767, 32768, 65280, 65535, 1000]], np.uint16).repeat(8, axis=0)
    for name, data in (("grey", None), ("rgb", png16_bytes(np.stack([values] * 3, axis=-1), 2))):
        for index in range(2):
            path = tmp_path / name / f"class{index}" / "0.png"
            path.parent.mkdir(parents=True)
            if data is None:
                Image.fromarray(values).save(path)  # I;16
            else:
                path.write_bytes(data)
            (path.parent / "1.png").write_bytes(path.read_bytes())
    grey, rgb = (
        load_source(settings("folder", path=str(tmp_path / name)), Path("unused"), False).images
        for name in ("grey", "rgb")
    )
    assert np.array_equal(grey, rgb)
    assert grey[0, 0, :, 0].tolist() == (values[0] >> 8).tolist()


def test_a_16_bit_grey_png_that_an_older_pillow_opens_as_mode_i_is_scaled_too() -> None:
    from cdrepro.data.sources import _eight_bit

    image = Image.fromarray((np.arange(256, dtype=np.int32) * 257).reshape(16, 16))
    assert image.mode == "I"
    image.format = "PNG"  # what Image.open sets for a PNG file
    assert np.array_equal(np.asarray(_eight_bit(image)), np.arange(256).reshape(16, 16))


@pytest.mark.parametrize("dtype, mode", [(np.int32, "I"), (np.float32, "F")])
def test_32_bit_and_floating_point_pixels_are_refused_naming_the_file(tmp_path: Path, dtype: type, mode: str) -> None:
    """No fixed range to map to 8 bits, so refused rather than clipped. PIL reads a file by its
    content, so a 32-bit TIFF saved under a .png name reaches the decoder."""
    for name in ("a/0.png", "a/1.png", "b/0.png"):
        write_png(tmp_path / name, (10, 20, 30))
    deep = tmp_path / "b" / "1.png"
    Image.fromarray(np.full((12, 9), 70000, dtype)).save(deep, format="TIFF")
    with pytest.raises(
        ImageFolderError,
        match=rf"cannot read image {re.escape(str(deep))}: .*\(PIL mode {mode}\) "
        r"have no fixed range .*save the images as 8- or 16-bit PNG",
    ):
        load_source(settings("folder", path=str(tmp_path), store_size=8), Path("unused"), False)


def store_size_maximum() -> int:
    from cdrepro.config import load_schema

    return load_schema()["properties"]["datasets"]["additionalProperties"]["properties"]["store_size"]["maximum"]


def test_images_above_store_sizes_maximum_are_stored_at_the_maximum_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the fix, a folder of 3000 px squares without store_size was stored at 3000 px."""
    maximum = store_size_maximum()
    side = maximum + 8
    for name, colour in (("a", (200, 10, 10)), ("b", (10, 10, 200))):
        for index in range(2):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(np.full((side, side, 3), colour, np.uint8)).save(tmp_path / name / f"{index}.png")
    with caplog.at_level(logging.WARNING, logger="cdrepro"):
        raw = load_source(settings("folder", path=str(tmp_path)), Path("unused"), False)
    assert raw.images.shape == (4, maximum, maximum, 3) and raw.source_info["store_size"] == maximum
    assert (raw.images[0] == (200, 10, 10)).all() and (raw.images[3] == (10, 10, 200)).all()
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path}: the images are {side} x {side} px, above store_size's maximum: stored at {maximum} x "
        f"{maximum} (set the dataset's store_size to store them smaller)"
    ]
    caplog.clear()
    assert load_source(settings("folder", path=str(tmp_path), store_size=16), Path("unused"), False).images.shape == (
        4,
        16,
        16,
        3,
    )
    assert caplog.records == []  # a store_size that was set is not commented on


@pytest.mark.parametrize("source", ["folder", "imagenet10"])
def test_an_image_root_that_is_a_file_is_called_a_file(tmp_path: Path, source: str) -> None:
    root = tmp_path / "images.zip"
    root.write_bytes(b"PK\x03\x04 an archive, not a folder")
    with pytest.raises(
        ImageFolderError,
        match=rf"^{re.escape(str(root))} is a file, not a folder of class "
        r"folders; point the dataset's path at the folder",
    ):
        load_source(settings(source, path=str(root)), Path("unused"), False)


def test_one_image_per_class_is_refused_because_every_score_would_be_one(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_png(tmp_path / "images" / name / "only.png", (ord(name), 0, 0))
    out = tmp_path / "out"
    with pytest.raises(
        ImageFolderError,
        match=r"images: every class has one image, so any clustering of its "
        r"3 images into 3 clusters scores 1\.0: put at least 2 images "
        r"in every class folder$",
    ):
        prepare_dataset(
            "mine",
            settings("folder", path=str(tmp_path / "images")),
            "unused",
            False,
            out / "mine.npz",
            out / "mine.json",
        )
    assert not out.exists()
    write_png(tmp_path / "images" / "a" / "second.png", (1, 2, 3))  # one class of two: a real task
    assert len(load_source(settings("folder", path=str(tmp_path / "images")), Path("unused"), False).labels) == 4


def test_images_per_class_1_is_refused_because_every_score_would_be_one(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for index in range(3):
            write_png(tmp_path / name / f"{index}.png", (index, 0, 0))
    with pytest.raises(
        ImageFolderError,
        match=r"every class has one image.*2 images into 2 clusters scores "
        r"1\.0: set images_per_class to 2 or more$",
    ):
        load_source(settings("folder", path=str(tmp_path), images_per_class=1), Path("unused"), False)
    assert load_source(
        settings("folder", path=str(tmp_path), images_per_class=2), Path("unused"), False
    ).labels.tolist() == [0, 0, 1, 1]


def test_imagenet10_with_one_image_per_synset_is_refused(imagenet10_tree: Path) -> None:
    for synset in IMAGENET10_SYNSETS:
        (imagenet10_tree / synset / f"{synset}_1.JPEG").unlink()
    with pytest.raises(ImageFolderError, match="every class has one image, so any clustering of its 10 images"):
        load_source(settings("imagenet10", path=str(imagenet10_tree)), Path("unused"), False)


# --- which sources have an official split --------------------------------------------------------


def test_the_sources_that_record_an_official_split_are_the_official_sources(
    fake_cifar10: FakeDataset, fake_cifar100: FakeDataset, fake_stl10: FakeDataset
) -> None:
    """A run's ``training_set`` says "official" for these sources without reading the data
    (``cdrepro.data.training_set``): it must be exactly the sources whose loader records one."""
    from cdrepro.config import FOLDER_SOURCES, OFFICIAL_SOURCES, load_schema

    roots = {
        "cifar10": fake_cifar10.download_dir,
        "cifar100": fake_cifar100.download_dir,
        "cifar100_20": fake_cifar100.download_dir,
        "stl10": fake_stl10.download_dir,
        "digits": Path("unused"),
    }
    recorded = {
        name for name, root in roots.items() if "splits" in load_source(settings(name), root, False).source_info
    }
    assert recorded == OFFICIAL_SOURCES
    # The rest read a folder of class folders, which has an official split only with a
    # test_path (tests/data/test_sources.py::test_a_test_folder_is_the_official_test_split).
    sources = load_schema()["properties"]["datasets"]["additionalProperties"]["properties"]["source"]["enum"]
    assert set(sources) - set(roots) == set(FOLDER_SOURCES)


def test_a_test_folder_is_the_official_test_split(tmp_path: Path) -> None:
    """``test_path``: its images after ``path``'s, at the same stored size, labelled by the
    union of both folders' classes, the sizes recorded as the official split;
    ``images_per_class`` picks from ``path`` only."""
    for name, red in (("cat", 255), ("dog", 0)):
        for i in range(3):
            write_png(tmp_path / "train" / name / f"{i}.png", (red, i, 0), size=16)
    write_png(tmp_path / "test" / "dog" / "0.png", (0, 9, 0), size=12)  # other sizes: stored as the train's
    write_png(tmp_path / "test" / "emu" / "0.png", (7, 7, 7), size=12)  # a class the train folder lacks
    write_png(tmp_path / "test" / "emu" / "1.png", (7, 7, 7), size=12)
    folder = settings("folder", path=str(tmp_path / "train"), test_path=str(tmp_path / "test"), images_per_class=2)
    raw = load_source(folder, Path("unused"), False)
    assert raw.class_names == ["cat", "dog", "emu"] and raw.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert raw.images.shape == (7, 16, 16, 3) and raw.images[4, 0, 0].tolist() == [0, 9, 0]
    assert raw.source_info["splits"] == {"train": 4, "test": 3}
    assert raw.source_info["test_path"] == str((tmp_path / "test").resolve())
