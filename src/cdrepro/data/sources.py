"""Dataset sources: turn a dataset's settings into raw uint8 arrays (then ``prepare_dataset`` stores them).

Sources (``settings["source"]``):

* ``digits`` — scikit-learn's 1,797 8x8 digits (ships with scikit-learn, so it works offline).
* ``cifar10``, ``cifar100`` (100 fine classes), ``cifar100_20`` (its 20 superclasses), ``stl10`` —
  torchvision's archives in ``download_dir``, train split
  first, then test (the paper trains and evaluates on both). Archives can be downloaded (by
  torchvision's ``download_url``) or placed there by hand; their MD5 is checked either way, and
  they are extracted here, not by torchvision, so that every member is checked first
  (``safe_extract``: no absolute paths, no ``..``, no links leading out, no device files).
* ``imagenet10``, ``folder`` — a folder of images that the user points to (ImageNet cannot be
  downloaded automatically), decoded with PIL (16-bit grey scaled to 8 bits) and resized once
  to ``store_size``.

Failures that a user must fix outside the pipeline (archive missing, no network, checksum
mismatch, folder missing) raise ``DatasetUnavailable`` with a message that says what to do;
a user folder with the wrong contents raises ``ImageFolderError``.
"""

from __future__ import annotations

import http.client
import logging
import os
import pickle
import posixpath
import sys
import tarfile
import urllib.error
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cdrepro.data.prepared import save_prepared

log = logging.getLogger(__name__)

DEFAULT_STORE_SIZE = 256
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# PIL's modes for 16-bit grey (16-bit PNG and TIFF). ``convert("RGB")`` clips them at 255, which
# turns a 16-bit PNG into a white square, so they are scaled to 8 bits first.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# The ImageNet-10 subset (Chang et al., 2017, "Deep Adaptive Image Clustering"), in label order.
IMAGENET10_SYNSETS: dict[str, str] = {
    "n02056570": "king penguin",
    "n02085936": "Maltese dog",
    "n02128757": "snow leopard",
    "n02690373": "airliner",
    "n02692877": "airship",
    "n03095699": "container ship",
    "n04254680": "soccer ball",
    "n04285008": "sports car",
    "n04467665": "trailer truck",
    "n07747607": "orange",
}
IMAGENET10_IMAGES_PER_CLASS = 1300  # every class of the ImageNet-1k train split used here

# Used when stl10_binary/class_names.txt is absent (torchvision then sets no ``classes``).
STL10_CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")

RESIZE_NOTE = "PIL bilinear (antialiased when shrinking) to store_size x store_size; whole image squashed, no crop"

# What a failed download raises: urllib's URLError and socket errors are OSErrors; a connection
# dropped mid-response can also surface as an http.client exception.
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


class DatasetUnavailable(RuntimeError):
    """The data cannot be had here: archive missing or corrupt, no network, or folder missing."""


class ImageFolderError(ValueError):
    """A user's image folder is unusable: wrong layout, an empty class, or an unreadable image."""


class UnsafeArchive(DatasetUnavailable):
    """An archive has a member that could write outside the extraction folder (absolute path,
    ``..``, a link leading out) or is a device or other special file; nothing of it is extracted."""


@dataclass
class RawDataset:
    """A source's images and labels, before validation and storage by ``save_prepared``."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    source_info: dict[str, Any]


def load_source(
    settings: dict[str, Any], download_dir: Path, download: bool, eval_size: int | None = None
) -> RawDataset:
    """Read the dataset that ``settings`` (one entry of the params file's ``datasets``) describes.

    ``download_dir`` holds torchvision archives; ``download`` allows fetching missing ones.
    ``eval_size`` (the profile's image size) stores a folder of images of several sizes.
    """
    source = settings.get("source")
    download_dir = Path(download_dir).expanduser()
    if source == "digits":
        return _load_digits()
    if source == "cifar10":
        return _load_cifar10(download_dir, download)
    if source == "cifar100":
        return _load_cifar100(download_dir, download)
    if source == "cifar100_20":
        return _load_cifar100_20(download_dir, download)
    if source == "stl10":
        return _load_stl10(download_dir, download)
    if source == "imagenet10":
        return _load_imagenet10(_folder_setting(settings), _store_size(settings))
    if source == "folder":
        return _load_folder(settings, eval_size)
    known = "digits, cifar10, cifar100, cifar100_20, stl10, imagenet10, folder"
    raise ValueError(f"unknown dataset source {source!r} (known: {known})")


def prepare_dataset(
    name: str,
    settings: dict[str, Any],
    download_dir: str | Path,
    download: bool,
    npz_path: str | Path,
    meta_path: str | Path,
    eval_size: int | None = None,
) -> dict[str, Any]:
    """Load dataset ``name`` from its source and write the prepared pair; return its metadata.

    Loading happens completely before anything is written, so a failure leaves no file.
    """
    raw = load_source(settings, Path(download_dir), download, eval_size)
    return save_prepared(npz_path, meta_path, name, raw.images, raw.labels, raw.class_names, raw.source_info)


# --- digits --------------------------------------------------------------------------------------


def _load_digits() -> RawDataset:
    """scikit-learn's digits: 8x8 grey values 0..16, scaled to 0..255 and repeated into RGB.

    RGB because the whole pipeline (augmentations, backbone) expects three channels.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    images = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    info = {"source": "digits", "origin": "sklearn.datasets.load_digits", "value_scale": "round(v * 255 / 16)"}
    return RawDataset(images, labels, [str(digit) for digit in range(10)], info)


# --- torchvision archives ------------------------------------------------------------------------


class _Fetch(Enum):
    """What has to happen before torchvision can read the extracted files."""

    NOTHING = "extracted files present and intact"
    EXTRACT = "archive present and intact: extract it (no network)"
    DOWNLOAD = "download the archive, check it and extract it"


class _ArchivedDataset(Protocol):
    """A torchvision dataset class read from one archive (CIFAR10, CIFAR100, STL10): the class
    attributes used here, and its constructor."""

    url: str
    filename: str
    tgz_md5: str
    base_folder: str
    train_list: list[list[str]]  # [file name, MD5] pairs
    test_list: list[list[str]]

    def __call__(self, *, root: str, download: bool, **split: Any) -> Any: ...


def _archive_help(dataset_class: _ArchivedDataset, root: Path) -> str:
    return (
        f"download {dataset_class.url} by hand and place it as {root / dataset_class.filename}; "
        f"its MD5 ({dataset_class.tgz_md5}) and its members' paths are checked before it is extracted"
    )


def _extracted_files_intact(dataset_class: _ArchivedDataset, root: Path) -> bool:
    """The same check torchvision's ``_check_integrity`` makes, done on the class, not an instance."""
    from torchvision.datasets.utils import check_integrity

    folder = root / dataset_class.base_folder
    files = dataset_class.train_list + dataset_class.test_list
    return all(check_integrity(folder / file_name, md5) for file_name, md5 in files)


def _corrupt(name: str, dataset_class: _ArchivedDataset, root: Path) -> DatasetUnavailable:
    archive, extracted = root / dataset_class.filename, root / dataset_class.base_folder
    return DatasetUnavailable(
        f"{name}: {archive} (or the files extracted from it in {extracted}) is corrupt or incomplete "
        f"(checksum mismatch): delete it and download again (set data.download: true, or "
        f"{_archive_help(dataset_class, root)})"
    )


def _plan_fetch(name: str, dataset_class: _ArchivedDataset, root: Path, download: bool) -> _Fetch:
    """Decide what must happen before torchvision reads the extracted files, refusing early when
    it could only fail or touch the network. A hand-placed, intact archive is extracted even when
    ``download`` is false (extracting needs no network).
    """
    from torchvision.datasets.utils import check_integrity

    if _extracted_files_intact(dataset_class, root):
        return _Fetch.NOTHING
    archive = root / dataset_class.filename
    if archive.is_file():
        if check_integrity(archive, dataset_class.tgz_md5):
            return _Fetch.EXTRACT
        if not download:
            raise _corrupt(name, dataset_class, root)
        return _Fetch.DOWNLOAD  # fetched again over the bad copy
    if not download:
        raise DatasetUnavailable(
            f"{name}: {dataset_class.filename} not found in {root} and downloading is off "
            f"(data.download: false). Set data.download: true, or {_archive_help(dataset_class, root)}"
        )
    return _Fetch.DOWNLOAD


def _download_archive(name: str, dataset_class: _ArchivedDataset, root: Path) -> None:
    """Fetch the archive with torchvision's ``download_url`` (which checks its MD5), not extracting it."""
    from torchvision.datasets.utils import download_url

    try:
        download_url(dataset_class.url, str(root), filename=dataset_class.filename, md5=dataset_class.tgz_md5)
    except _NETWORK_ERRORS as error:
        raise DatasetUnavailable(
            f"{name}: could not download {dataset_class.url} ({error}). Without network access, "
            f"{_archive_help(dataset_class, root)}"
        ) from error
    except RuntimeError as error:  # torchvision: "File not found or corrupted."
        raise _corrupt(name, dataset_class, root) from error


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why extracting ``member`` into a folder could write outside it (or make a device), or None."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "a '..' component"
    if member.isdev() or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "a device, FIFO or other special file"
    if member.issym() or member.islnk():
        target = member.linkname
        if member.issym():  # relative to the link's own folder; hard links to the archive root
            target = posixpath.join(posixpath.dirname(name), target)
        if member.linkname.startswith("/") or posixpath.normpath(target).split("/")[0] == "..":
            return f"a link to {member.linkname!r}, outside the folder"
    return None


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a tar archive into ``destination``, refusing it whole if any member is unsafe.

    Every member is checked before anything is written (``UnsafeArchive`` names the first bad
    one); the extraction itself then also uses Python's ``"data"`` filter, which enforces the
    same rules and drops set-uid bits and foreign owners.
    """
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                reason = _unsafe_member(member)
                if reason is not None:
                    raise UnsafeArchive(
                        f"{archive} holds {member.name!r}, {reason}: refused, nothing was extracted "
                        f"(the archive is not the one this pipeline expects; delete it and get it "
                        f"again from its official source)"
                    )
            destination.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above are the protection
                tar.extractall(destination, members=members)
    except (tarfile.TarError, EOFError) as error:
        raise DatasetUnavailable(
            f"{archive} is not a readable tar archive ({error}): delete it and download it again"
        ) from error


def _fetch(name: str, dataset_class: _ArchivedDataset, root: Path, download: bool) -> None:
    """Make the extracted files present and intact: download (if needed and allowed), check, extract."""
    fetch = _plan_fetch(name, dataset_class, root, download)
    if fetch is _Fetch.NOTHING:
        return
    if fetch is _Fetch.DOWNLOAD:
        _download_archive(name, dataset_class, root)
    try:
        safe_extract(root / dataset_class.filename, root)
    except UnsafeArchive:
        raise
    except DatasetUnavailable as error:
        raise _corrupt(name, dataset_class, root) from error
    if not _extracted_files_intact(dataset_class, root):
        raise _corrupt(name, dataset_class, root)


def _open_split(name: str, dataset_class: _ArchivedDataset, root: Path, **split: Any) -> Any:
    """Construct one torchvision split from the extracted files (never downloading or extracting)."""
    try:
        return dataset_class(root=str(root), download=False, **split)
    except RuntimeError as error:
        # torchvision's wording: "Dataset not found or corrupted", "File not found or corrupted."
        if "corrupt" in str(error) or "not found" in str(error):
            raise _corrupt(name, dataset_class, root) from error
        raise


def _torchvision_info(source: str, dataset_class: _ArchivedDataset, split_sizes: dict[str, int]) -> dict[str, Any]:
    import torchvision

    return {
        "source": source,
        "archive": dataset_class.filename,
        "url": dataset_class.url,
        "archive_md5": dataset_class.tgz_md5,
        "splits": split_sizes,
        "torchvision": torchvision.__version__,
    }


def _load_cifar10(root: Path, download: bool) -> RawDataset:
    from torchvision.datasets import CIFAR10

    _fetch("cifar10", CIFAR10, root, download)
    train = _open_split("cifar10", CIFAR10, root, train=True)
    test = _open_split("cifar10", CIFAR10, root, train=False)
    images = np.ascontiguousarray(np.concatenate([train.data, test.data]))  # torchvision gives NHWC views
    labels = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)]).astype(np.int64)
    info = _torchvision_info("cifar10", CIFAR10, {"train": len(train), "test": len(test)})
    return RawDataset(images, labels, list(train.classes), info)


def _read_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _load_cifar100(root: Path, download: bool) -> RawDataset:
    """CIFAR-100 with its 100 fine classes as labels (torchvision's ``targets`` and ``classes``):
    the many-clusters test (``many_clusters``), and CLD's CIFAR-100 numbers."""
    from torchvision.datasets import CIFAR100

    train, test, images = _cifar100_splits("cifar100", root, download)
    labels = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)]).astype(np.int64)
    info = _torchvision_info("cifar100", CIFAR100, {"train": len(train), "test": len(test)})
    info["labels"] = "fine_labels (100 classes)"
    return RawDataset(images, labels, list(train.classes), info)


def _load_cifar100_20(root: Path, download: bool) -> RawDataset:
    """CIFAR-100 with its 20 coarse superclasses as labels.

    torchvision exposes only the 100 fine labels, so the coarse ones are read from the same
    pickles that torchvision has just checked (``coarse_labels``, and ``coarse_label_names`` in
    ``meta``), in the same order as its images.
    """
    from torchvision.datasets import CIFAR100

    train, test, images = _cifar100_splits("cifar100_20", root, download)
    folder = root / CIFAR100.base_folder
    batch_files = [file_name for file_name, _ in CIFAR100.train_list + CIFAR100.test_list]
    coarse = np.concatenate([np.asarray(_read_pickle(folder / f)["coarse_labels"]) for f in batch_files])
    if coarse.shape[0] != images.shape[0]:
        raise _corrupt("cifar100_20", CIFAR100, root)
    class_names = list(_read_pickle(folder / CIFAR100.meta["filename"])["coarse_label_names"])
    info = _torchvision_info("cifar100_20", CIFAR100, {"train": len(train), "test": len(test)})
    info["labels"] = "coarse_labels (20 superclasses)"
    return RawDataset(images, coarse.astype(np.int64), class_names, info)


def _cifar100_splits(name: str, root: Path, download: bool) -> tuple[Any, Any, np.ndarray]:
    """torchvision's CIFAR-100 train and test splits (checked, fetched if allowed) and their
    images, train first: (N, 32, 32, 3) uint8."""
    from torchvision.datasets import CIFAR100

    _fetch(name, CIFAR100, root, download)
    train = _open_split(name, CIFAR100, root, train=True)
    test = _open_split(name, CIFAR100, root, train=False)
    return train, test, np.ascontiguousarray(np.concatenate([train.data, test.data]))  # torchvision: NHWC views


def _load_stl10(root: Path, download: bool) -> RawDataset:
    """STL-10's labelled splits only (5,000 train + 8,000 test); the 100,000 unlabelled are not used."""
    from torchvision.datasets import STL10

    _fetch("stl10", STL10, root, download)
    train = _open_split("stl10", STL10, root, split="train")
    test = _open_split("stl10", STL10, root, split="test")
    nchw = np.concatenate([train.data, test.data])
    images = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    labels = np.concatenate([train.labels, test.labels]).astype(np.int64)
    class_names = list(getattr(train, "classes", STL10_CLASS_NAMES))
    info = _torchvision_info("stl10", STL10, {"train": len(train), "test": len(test)})
    return RawDataset(images, labels, class_names, info)


# --- image folders -------------------------------------------------------------------------------


def _folder_setting(settings: dict[str, Any]) -> Path:
    """The dataset's image folder; a relative path is taken from the current directory (the project root)."""
    if not settings.get("path"):
        raise ValueError(f"source {settings.get('source')!r} needs a 'path': the folder <path>/<class>/<image>")
    return Path(settings["path"]).expanduser()


def _store_size(settings: dict[str, Any]) -> int:
    return int(settings.get("store_size", DEFAULT_STORE_SIZE))


def _class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root``, sorted; hidden ones (``.cache``, ``.ipynb_checkpoints``) are skipped."""
    return sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _image_files(class_folder: Path) -> list[Path]:
    """Image files of one class folder, sorted; other files (notes, ``.DS_Store``) are ignored."""
    return sorted(
        entry
        for entry in class_folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS
    )


def _decode_resized(path: Path, size: int) -> np.ndarray:
    """Decode one image as RGB and squash it to ``size`` x ``size`` (bilinear, antialiased)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            resized = _eight_bit(image).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except Exception as error:  # any decoder failure: the user needs to know which file
        raise ImageFolderError(f"cannot read image {path}: {error}") from error
    return np.asarray(resized, dtype=np.uint8)


def _eight_bit(image: Any) -> Any:
    """``image`` with samples of at most 8 bits, ready for ``convert("RGB")``.

    16-bit grey keeps its high byte (v >> 8): PIL itself reads 16-bit RGB(A) PNGs that way, so a
    grey and a colour file of one picture agree, and a 16-bit copy of an 8-bit image (v * 257)
    gives exactly that image back. 32-bit integer and floating-point pixels (modes I and F, from
    TIFF for instance) have no fixed range to map to 0..255; scaling each image by its own range
    would change contrast silently, image by image, so they are refused instead.
    """
    from PIL import Image

    # Older Pillows open 16-bit grey PNGs as mode I (a PNG sample has at most 16 bits).
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
        return Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise ValueError(
            f"{kind} pixels (PIL mode {image.mode}) have no fixed range to scale to 8 bits; "
            "save the images as 8- or 16-bit PNG or JPEG"
        )
    return image


def _decode_all(paths: Sequence[Path], size: int, description: str) -> np.ndarray:
    """Decode ``paths`` in order into one (N, size, size, 3) array, on a thread pool.

    Threads suffice: PIL releases the GIL while decoding and resizing. On the first failure the
    queued images are cancelled so the error surfaces at once.
    """
    from tqdm import tqdm

    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def decode_into(index: int) -> None:
        images[index] = _decode_resized(paths[index], size)

    pool = ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4))
    try:
        # disable=None: a bar on a terminal only, so logs and captured stderr keep one line per message
        progress = tqdm(
            pool.map(decode_into, range(len(paths))),
            total=len(paths),
            desc=description,
            unit="img",
            file=sys.stderr,
            disable=None,
        )
        for _ in progress:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return images


def _folder_info(source: str, root: Path, size: int, counts: list[int]) -> dict[str, Any]:
    return {
        "source": source,
        "path": str(root.resolve()),
        "store_size": size,
        "resize": RESIZE_NOTE,
        "images_per_class": counts,
    }


def _store_size_maximum() -> int:
    from cdrepro.config import load_schema

    dataset = load_schema()["properties"]["datasets"]["additionalProperties"]
    return int(dataset["properties"]["store_size"]["maximum"])


def _capped_store_size(root: Path, side: int) -> int:
    """``side`` (the images' own size), at most store_size's maximum.

    Capped, not refused: train.image_size has the same maximum, so no run can look at more
    pixels than the cap keeps, and a full-size store would only cost memory (27 MB per
    3000 px image). The stored size is what the user could have set by hand, and the log says so.
    """
    maximum = _store_size_maximum()
    if side <= maximum:
        return side
    log.warning(
        "%s: the images are %d x %d px, above store_size's maximum: stored at %d x %d "
        "(set the dataset's store_size to store them smaller)",
        root,
        side,
        side,
        maximum,
        maximum,
    )
    return maximum


def _native_size(paths: Sequence[Path], eval_size: int | None) -> int:
    """The images' own side when they are all squares of one size (CIFAR's 32 px: stored as
    they are, not blown up), else the profile's evaluation size (DEFAULT_STORE_SIZE without
    one). Reads headers only."""
    from PIL import Image

    sizes = set()
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.add(image.size)
        except Exception as error:
            raise ImageFolderError(f"cannot read image {path}: {error}") from error
        if len(sizes) > 1:
            break
    if len(sizes) == 1 and len({side for size in sizes for side in size}) == 1:
        return next(iter(sizes))[0]
    return eval_size or DEFAULT_STORE_SIZE


def _load_class_folder(
    root: Path, size: int | None, eval_size: int | None = None, per_class: int | None = None
) -> RawDataset:
    """A user's own images, laid out ``<root>/<class>/<image>``; classes are the sorted folder names.

    ``per_class`` (``images_per_class``) keeps the first that many files of each class, in sorted
    order, so a subset is balanced and the same on every machine.

    ``size`` None (no ``store_size`` in the params): the images' own size (``_native_size``), at
    most store_size's maximum (``_capped_store_size``).
    Each image is decoded, converted to RGB and squashed (no crop) to ``size`` x ``size`` with
    PIL's bilinear filter, which antialiases when shrinking. That is the paper's evaluation
    transform (Resize to a square) done once, at a lower resolution, so the stored array is
    small and training resizes from it on the device.
    """
    layout = f"expected a folder <path>/<class>/<image> with images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    _refuse_a_file(root, layout)
    if not root.is_dir():
        raise DatasetUnavailable(f"image folder {root} not found: {layout}")
    class_folders = _class_folders(root)
    if not class_folders:
        raise ImageFolderError(f"{root} has no class sub-folders: {layout}")
    if len(class_folders) == 1:
        # One class: every clustering scores 1.0 against it, which would look like success.
        raise ImageFolderError(
            f"{root} has one class sub-folder ({class_folders[0].name}); clustering "
            f"is scored against at least two classes: {layout}"
        )
    files_per_class = [_image_files(folder) for folder in class_folders]
    for folder, files in zip(class_folders, files_per_class, strict=True):
        if not files:
            raise ImageFolderError(f"class folder {folder} holds no images: {layout}")
    extra_info: dict[str, Any] = {}
    if per_class is not None:
        files_per_class = _first_per_class(class_folders, files_per_class, per_class)
        extra_info["images_per_class"] = per_class
    _refuse_one_image_per_class(root, files_per_class, per_class)
    if size is None:
        size = _capped_store_size(root, _native_size([path for files in files_per_class for path in files], eval_size))
    return _decode_classes(
        "folder", root, int(size), [folder.name for folder in class_folders], files_per_class, extra_info
    )


def _load_folder(settings: dict[str, Any], eval_size: int | None) -> RawDataset:
    """A folder source: ``path``'s images, and where ``test_path`` is given, that folder's after
    them as the official test split, stored at the same size (``images_per_class`` picks from
    ``path`` only)."""
    train = _load_class_folder(
        _folder_setting(settings), settings.get("store_size"), eval_size, settings.get("images_per_class")
    )
    if not settings.get("test_path"):
        return train
    test_root = Path(settings["test_path"]).expanduser()
    test = _load_class_folder(test_root, int(train.source_info["store_size"]))
    return _with_test_split(train, test, test_root)


def _with_test_split(train: RawDataset, test: RawDataset, test_root: Path) -> RawDataset:
    """``train``'s images then ``test``'s, labelled by the sorted union of their class names (a
    class of one folder only keeps its images; ``cdrepro split`` names a test class that the
    train folder lacks), with both sizes recorded as the official split."""
    class_names = sorted(set(train.class_names) | set(test.class_names))
    index = {name: label for label, name in enumerate(class_names)}

    def relabelled(part: RawDataset) -> np.ndarray:
        return np.array([index[name] for name in part.class_names], dtype=np.int64)[part.labels]  # (n,)

    info = train.source_info | {
        "test_path": str(test_root.resolve()),
        "test_images_per_class": test.source_info["images_per_class"],
        "splits": {"train": len(train.labels), "test": len(test.labels)},
    }
    images = np.concatenate([train.images, test.images])  # (n_train + n_test, H, W, 3), train first
    return RawDataset(images, np.concatenate([relabelled(train), relabelled(test)]), class_names, info)


def _refuse_a_file(root: Path, layout: str) -> None:
    """A file given as the image root: said as such (is_dir alone would call it "not found")."""
    if root.is_file():
        raise ImageFolderError(
            f"{root} is a file, not a folder of class folders; point the dataset's "
            f"path at the folder that holds them: {layout}"
        )


def _refuse_one_image_per_class(root: Path, files_per_class: list[list[Path]], per_class: int | None) -> None:
    """N images in N classes: K-means with K = N puts each image in its own cluster, so NMI, ARI
    and ACC are all 1.0 whatever the model learnt, which would look like success."""
    if any(len(files) > 1 for files in files_per_class):
        return
    count = len(files_per_class)
    remedy = "set images_per_class to 2 or more" if per_class == 1 else "put at least 2 images in every class folder"
    raise ImageFolderError(
        f"{root}: every class has one image, so any clustering of its {count} images "
        f"into {count} clusters scores 1.0: {remedy}"
    )


def _first_per_class(class_folders: list[Path], files_per_class: list[list[Path]], per_class: int) -> list[list[Path]]:
    for folder, files in zip(class_folders, files_per_class, strict=True):
        if len(files) < per_class:
            raise ImageFolderError(
                f"class folder {folder} holds {len(files)} image{'' if len(files) == 1 else 's'}, fewer "
                f"than images_per_class {per_class}: lower images_per_class or remove it to use every image"
            )
    return [files[:per_class] for files in files_per_class]


def _decode_classes(
    source: str,
    root: Path,
    size: int,
    class_names: list[str],
    files_per_class: list[list[Path]],
    extra_info: dict[str, Any],
) -> RawDataset:
    paths = [path for files in files_per_class for path in files]
    labels = np.concatenate([np.full(len(files), label, dtype=np.int64) for label, files in enumerate(files_per_class)])
    images = _decode_all(paths, size, description=f"{source} {root.name}")
    info = _folder_info(source, root, size, [len(files) for files in files_per_class]) | extra_info
    return RawDataset(images, labels, class_names, info)


def _imagenet10_layout() -> str:
    synsets = ", ".join(f"{synset} ({readable})" for synset, readable in IMAGENET10_SYNSETS.items())
    return (
        "expected <path>/<synset>/<image>.JPEG (the ImageNet-1k train layout, 1,300 images per synset) "
        f"with exactly these 10 synset folders: {synsets}"
    )


def _load_imagenet10(root: Path, size: int) -> RawDataset:
    """ImageNet-10 from a folder the user provides (ImageNet cannot be downloaded automatically).

    The layout is checked strictly (exactly the 10 synsets, none empty) because a wrong folder
    would otherwise silently produce a different benchmark. Labels follow the synset order of
    ``IMAGENET10_SYNSETS``; class names are the synset ids, with readable names in the source
    info. Images are squashed to ``size`` x ``size`` as for ``folder`` (the paper's evaluation
    transform, at lower resolution).
    """
    _refuse_a_file(root, _imagenet10_layout())
    if not root.is_dir():
        raise DatasetUnavailable(f"imagenet10: folder {root} not found; {_imagenet10_layout()}")
    present = {folder.name for folder in _class_folders(root)}
    missing = [synset for synset in IMAGENET10_SYNSETS if synset not in present]
    extra = sorted(present - set(IMAGENET10_SYNSETS))
    if missing or extra:
        problems = ([f"missing synset folders: {', '.join(missing)}"] if missing else []) + (
            [f"unexpected folders: {', '.join(extra)}"] if extra else []
        )
        raise ImageFolderError(f"imagenet10: {root} has {'; '.join(problems)}; {_imagenet10_layout()}")
    files_per_class = [_image_files(root / synset) for synset in IMAGENET10_SYNSETS]
    empty = [synset for synset, files in zip(IMAGENET10_SYNSETS, files_per_class, strict=True) if not files]
    if empty:
        raise ImageFolderError(f"imagenet10: synset folders without images: {', '.join(empty)}; {_imagenet10_layout()}")
    _refuse_one_image_per_class(root, files_per_class, None)
    off_count = [
        f"{synset}: {len(files)}"
        for synset, files in zip(IMAGENET10_SYNSETS, files_per_class, strict=True)
        if len(files) != IMAGENET10_IMAGES_PER_CLASS
    ]
    if off_count:
        warnings.warn(
            f"imagenet10: expected {IMAGENET10_IMAGES_PER_CLASS} images per synset (the paper's "
            f"13,000 in all); these differ: {', '.join(off_count)}",
            stacklevel=3,
        )
    extra_info = {"synset_names": dict(IMAGENET10_SYNSETS)}
    return _decode_classes("imagenet10", root, size, list(IMAGENET10_SYNSETS), files_per_class, extra_info)
