"""Bad input gets a clear error and no partial output (issue 5, item 4), through the CLI.

Each row of ``CASES`` is one bad input from the issue's list: it breaks a working params file
(or the files it points to), runs one ``cdrepro`` command and checks that the command exits 2
with a single ``cdrepro <command>: error: ...`` line naming the bad key, file or remedy, and
that nothing was added to or changed in the results folder (nor in the download folder).

Commands that would write something (``prepare``, ``train``) are used wherever the input is
read, so that "no partial output" is a real check; ``validate`` writes nothing anyway.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cdrepro.cli import main
from cdrepro.runs import ProfilePaths, Run, run_id

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = Run("digits", 256, "cd", 42)
RID = run_id(RUN)


@dataclass
class Case:
    command: list[str]
    expect: list[str]  # substrings of the error line; "{tmp}" is the test's temporary folder
    break_params: Callable[[dict, Path], Any] = lambda params, tmp: None
    setup: Callable[[Path, pytest.MonkeyPatch], Any] = lambda tmp, monkeypatch: None
    prepare_first: bool = False  # the digits data are prepared (with good params) beforehand
    extra: dict = field(default_factory=dict)


# --- inputs on disk ------------------------------------------------------------------------------


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(path)


def folder_dataset(name: str, source: str, path: str) -> Callable[[dict, Path], None]:
    def add(params: dict, tmp: Path) -> None:
        params["datasets"][name] = {
            "source": source,
            "path": str(tmp / path),
            "color_strength": 0.5,
            "blur": False,
            "store_size": 8,
        }

    return add


def archive_dataset(name: str, download: bool) -> Callable[[dict, Path], None]:
    def add(params: dict, tmp: Path) -> None:
        params["datasets"][name] = {"source": "cifar10", "color_strength": 0.5, "blur": False}
        params["data"]["download"] = download

    return add


def wrong_layout(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png(tmp / "inet" / "cats" / "a.png")  # a class folder, but not the 10 synsets
    png(tmp / "inet" / "dogs" / "b.png")


def empty_class(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png(tmp / "mine" / "full" / "a.png")
    (tmp / "mine" / "empty").mkdir()


def corrupt_image(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png(tmp / "mine" / "cat" / "a.png")
    png(tmp / "mine" / "dog" / "b.png")
    (tmp / "mine" / "dog" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")


def truncated_archive(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first bytes of a gzip stream, then nothing: a download cut short (MD5: the real one).
    (tmp / "downloads").mkdir()
    (tmp / "downloads" / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 60)


def no_network(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (simulated)")

    def refuse_socket(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror("network access is disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_socket)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)


def traversal_archive(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cifar-10-python.tar.gz whose MD5 matches (patched, as a tampered mirror would publish it)
    but which holds a ``../`` entry."""
    from torchvision.datasets import CIFAR10

    archive = tmp / "downloads" / CIFAR10.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [("cifar-10-batches-py/readme.html", b"ok"), ("cifar-10-batches-py/../../evil", b"x")]:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())


def no_gpu(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with one


def one_class(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png(tmp / "mine" / "cat" / "a.png")
    png(tmp / "mine" / "cat" / "b.png")


def two_small_classes(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.png", "b.png"):
        png(tmp / "mine" / "cat" / name)
    png(tmp / "mine" / "dog" / "a.png")


def with_images_per_class(dataset: str, source: str, path: str, count: int) -> Callable[[dict, Path], None]:
    def add(params: dict, tmp: Path) -> None:
        if source == "digits":
            params["datasets"][dataset]["images_per_class"] = count
        else:
            folder_dataset(dataset, source, path)(params, tmp)
            params["datasets"][dataset]["images_per_class"] = count

    return add


def profile_file(*parts: str) -> Path:
    return Path("results", "embedded", *parts)  # the tests' working directory is tmp_path


def flip_prepared_byte(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npz = tmp / profile_file("data", "digits.npz")
    data = bytearray(npz.read_bytes())
    data[-300] ^= 0x01  # a pixel: np.load alone would read it without complaint
    npz.write_bytes(bytes(data))


def train_split_lacks_class_9(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digits re-prepared with an official split whose train part has no 9 (all 9s in test)."""
    from cdrepro.data.prepared import load_prepared, save_prepared

    npz = tmp / profile_file("data", "digits.npz")
    data = load_prepared(npz)
    order = np.argsort(data.labels == 9, kind="stable")  # the 9s last
    nines = int(np.sum(data.labels == 9))
    splits = {"splits": {"train": len(data) - nines, "test": nines}}
    save_prepared(
        npz, npz.with_suffix(".json"), "digits", data.images[order], data.labels[order], data.class_names, splits
    )


def folder_whose_test_folder_has_a_class_the_train_lacks(params: dict, tmp: Path) -> None:
    """A folder dataset ``mine`` (cat, dog) whose test folder also holds an emu, prepared."""
    for folder, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog", "emu"))):
        for name in classes:
            for i in range(2):
                png(tmp / folder / name / f"{i}.png")
    folder_dataset("mine", "folder", "train")(params, tmp)
    params["datasets"]["mine"]["test_path"] = str(tmp / "test")
    write_params(params)
    assert main(["prepare", "--dataset", "mine"]) == 0


def stale_split(tmp: Path) -> None:
    split = tmp / profile_file("data", "digits.split.json")
    split.write_text(split.read_text().replace('"data_digest": "', '"data_digest": "0'))


def damaged_prepared_metadata(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp / profile_file("data", "digits.json")).write_text('{"name": "digits"')


def truncated_checkpoint(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdrepro.checkpoint import save_state

    path = tmp / profile_file("runs", RID, "checkpoint.pt")
    save_state(path, {"epoch": 1, "model": {"w": torch.zeros(100)}})
    path.write_bytes(path.read_bytes()[:200])


def stamped_file(kind: str, **digests: str) -> Callable[[dict, Path], None]:
    """A run's ``model.pt`` or ``metrics.json`` claiming the run's settings digest under the
    params, then ``digests`` (``data_digest``, or ``settings_digest`` to claim other settings)."""

    def write(params: dict, tmp: Path) -> None:
        from cdrepro.checkpoint import save_state
        from cdrepro.results import write_metrics
        from cdrepro.run_settings import resolve_run

        identity = {"settings_digest": resolve_run(params, RUN).digest(), "data_digest": "0" * 16, **digests}
        paths = ProfilePaths.from_params(params)
        if kind == "model":
            save_state(paths.model(RID), {**identity, "model": {}})
            return
        write_metrics(
            paths.metrics(RID),
            {
                "run_id": RID,
                "dataset": "digits",
                "batch_size": 256,
                "method": "cd",
                "variant": "cd",
                "seed": 42,
                "n_images": 1797,
                "num_classes": 10,
                "stages": {"backbone": {"nmi": 0.5, "ari": 0.4, "acc": 0.6}},
                "final_stage": "backbone",
                **identity,
            },
        )

    return write


def metrics_file(text: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def write(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp / profile_file("runs", RID, "metrics.json")
        path.parent.mkdir(parents=True)
        path.write_text(text)

    return write


def runs_folder_is_a_file(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp / profile_file("runs")).write_text("not a folder")


def results_dir_is_a_file(params: dict, tmp: Path) -> None:
    (tmp / "a-file").write_text("x")
    params["results_dir"] = str(tmp / "a-file")


def add_variant(name: str, **variant: Any) -> Callable[[dict, Path], None]:
    return lambda params, tmp: params["variants"].update({name: variant})


def after(*commands: list[str], then: Callable[[Path, pytest.MonkeyPatch], Any]) -> Callable:
    """A setup: these commands first (with the good params), then ``then``."""

    def setup(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for command in commands:
            assert main(command) == 0, command
        then(tmp, monkeypatch)

    return setup


def disk_full_writing(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """Writing ``name`` (its atomic writer's temporary file) fails as on a full disk."""

    def fill(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import errno
        import os

        real = Path.write_text

        def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
            if self.name.startswith(f".{name}."):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)

    return fill


def header_only_curves(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp / profile_file("runs", RID, "curves.csv")
    path.write_text(path.read_text().splitlines()[0] + "\n")


# --- the table -----------------------------------------------------------------------------------


def set_in(section: str, **values: Any) -> Callable[[dict, Path], None]:
    return lambda params, tmp: params[section].update(values)


def set_dataset(**values: Any) -> Callable[[dict, Path], None]:
    return lambda params, tmp: params["datasets"]["digits"].update(values)


def set_run(**values: Any) -> Callable[[dict, Path], None]:
    return lambda params, tmp: params["runs"][0].update(values)


PREPARE = ["prepare", "--dataset", "digits"]

CASES: dict[str, Case] = {
    "unknown key": Case(
        PREPARE, ["train: unknown key", "learning_rate", "allowed here:"], set_in("train", learning_rate=0.1)
    ),
    "wrong type": Case(PREPARE, ["train.epochs", "'ten' is not of type 'integer'"], set_in("train", epochs="ten")),
    "negative lr": Case(["train", "--run", RID], ["train.lr", "-0.1"], set_in("train", lr=-0.1), prepare_first=True),
    "batch size larger than the dataset": Case(
        ["train", "--run", "digits-bs2048-cd-s42"],
        ["batch size 2048", "1797 images", "'digits'"],
        set_run(batch_size=2048),
        prepare_first=True,
    ),
    "unknown variant": Case(
        PREPARE, ["runs[0].variant", "'nope'", "defined under variants: cc, cd, cdc"], set_run(variant="nope")
    ),
    "unknown dataset": Case(
        PREPARE, ["runs[0].dataset", "'mnist'", "defined under datasets: digits"], set_run(dataset="mnist")
    ),
    "missing ImageNet-10 folder": Case(
        ["prepare", "--dataset", "inet"],
        ["{tmp}/nowhere not found", "<path>/<synset>/<image>.JPEG", "n02056570"],
        folder_dataset("inet", "imagenet10", "nowhere"),
    ),
    "wrongly laid out ImageNet-10 folder": Case(
        ["prepare", "--dataset", "inet"],
        ["missing synset folders: n02056570", "unexpected folders: cats, dogs"],
        folder_dataset("inet", "imagenet10", "inet"),
        wrong_layout,
    ),
    "empty class folder": Case(
        ["prepare", "--dataset", "mine"],
        ["class folder {tmp}/mine/empty holds no images"],
        folder_dataset("mine", "folder", "mine"),
        empty_class,
    ),
    "corrupt image": Case(
        ["prepare", "--dataset", "mine"],
        ["cannot read image {tmp}/mine/dog/bad.jpg"],
        folder_dataset("mine", "folder", "mine"),
        corrupt_image,
    ),
    "truncated archive (checksum mismatch)": Case(
        ["prepare", "--dataset", "c10"],
        ["{tmp}/downloads/cifar-10-python.tar.gz", "checksum mismatch", "delete it and download again"],
        archive_dataset("c10", download=False),
        truncated_archive,
    ),
    "no network when a download is needed": Case(
        ["prepare", "--dataset", "c10"],
        [
            "could not download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "by hand and place it as {tmp}/downloads/cifar-10-python.tar.gz",
        ],
        archive_dataset("c10", download=True),
        no_network,
    ),
    "archive with a ../ entry": Case(
        ["prepare", "--dataset", "c10"],
        ["cifar-10-python.tar.gz holds 'cifar-10-batches-py/../../evil'", "refused, nothing was extracted"],
        archive_dataset("c10", download=False),
        traversal_archive,
    ),
    "whole-number float epochs": Case(
        PREPARE, ["train.epochs", "2.0 is not of type 'integer'"], set_in("train", epochs=2.0)
    ),
    "whole-number float batch size": Case(
        PREPARE, ["runs[0].batch_size", "256.0 is not of type 'integer'"], set_run(batch_size=256.0)
    ),
    "whole-number float seed": Case(PREPARE, ["runs[0].seed", "42.0 is not of type 'integer'"], set_run(seed=42.0)),
    "NaN as the temperature (YAML .nan)": Case(
        PREPARE,
        ["train.instance_temperature: .nan is not a finite number"],
        set_in("train", instance_temperature=float("nan")),
    ),
    "infinity as a crop scale": Case(
        PREPARE,
        ["datasets.digits.crop_min_scale: .inf is not a finite number"],
        lambda params, tmp: params["datasets"]["digits"].update(crop_min_scale=float("inf")),
    ),
    "a K-means seed beyond numpy's": Case(
        PREPARE, ["evaluate.kmeans_seed", "1099511627776", "2**32 - 1"], set_in("evaluate", kmeans_seed=2**40)
    ),
    "a run seed beyond numpy's": Case(PREPARE, ["runs[0].seed", "2**32 - 1"], set_run(seed=2**70)),
    "the reserved variant name kmeans_pixels": Case(
        PREPARE,
        ["variants.kmeans_pixels: the name is reserved", "rename the variant"],
        add_variant("kmeans_pixels", method="simclr"),
    ),
    "CLD with one group (SimCLR in disguise)": Case(
        PREPARE,
        ["variants.cld", "K = 1 group", "exactly 0", "use method simclr"],
        lambda params, tmp: params["variants"]["cld"].update(groups=1),
    ),
    "CD with one feature head (SimCLR in disguise)": Case(
        PREPARE,
        ["variants.cd", "feature_num gives K = 1 feature head", "use method simclr"],
        lambda params, tmp: params["variants"]["cd"].update(feature_num=1),
    ),
    "an unknown LIME segmentation option": Case(
        PREPARE,
        ["figures.lime.segmentation.options", "'n_segment' was unexpected", "slic takes only these"],
        lambda params, tmp: params["figures"]["lime"]["segmentation"]["options"].update(n_segment=16),
    ),
    "store_size on a digits dataset": Case(
        PREPARE,
        ["datasets.digits.store_size", "a 'digits' source ignores it", "remove the key"],
        lambda params, tmp: params["datasets"]["digits"].update(store_size=16),
    ),
    "path on a digits dataset": Case(
        PREPARE,
        ["datasets.digits.path", "a 'digits' source ignores it", "remove the key"],
        lambda params, tmp: params["datasets"]["digits"].update(path="data/digits"),
    ),
    "a params file that is a folder": Case(
        ["validate", "--params", "pdir"],
        ["pdir is a folder, not a params file", "pdir/params.yaml"],
        setup=lambda tmp, monkeypatch: (tmp / "pdir").mkdir(),
    ),
    "a params file in Latin-1": Case(
        [*PREPARE, "--params", "latin1.yaml"],
        ["latin1.yaml line 1: byte 0xe9 is not UTF-8", "save the file as UTF-8"],
        setup=lambda tmp, monkeypatch: (tmp / "latin1.yaml").write_bytes("profile: caf\xe9\n".encode("latin-1")),
    ),
    "a profile of dots (outside results_dir)": Case(
        PREPARE, ["profile", "'..'"], lambda params, tmp: params.update(profile="..")
    ),
    "results_dir is a file": Case(
        PREPARE, ["results_dir", "{tmp}/a-file exists and is not a folder"], results_dir_is_a_file
    ),
    "folder dataset of one class": Case(
        ["prepare", "--dataset", "mine"],
        ["{tmp}/mine has one class sub-folder (cat)", "at least two classes"],
        folder_dataset("mine", "folder", "mine"),
        one_class,
    ),
    "images_per_class on a source that is not a folder": Case(
        PREPARE,
        ["datasets.digits.images_per_class", "only a 'folder' source", "remove the key"],
        with_images_per_class("digits", "digits", "", 100),
    ),
    "a class with fewer images than images_per_class": Case(
        ["prepare", "--dataset", "mine"],
        ["class folder {tmp}/mine/dog holds 1 image, fewer than images_per_class 2", "lower images_per_class"],
        with_images_per_class("mine", "folder", "mine", 2),
        two_small_classes,
    ),
    "an image root that is a file": Case(
        ["prepare", "--dataset", "mine"],
        ["{tmp}/mine is a file, not a folder of class folders", "point the dataset's path at the folder"],
        folder_dataset("mine", "folder", "mine"),
        lambda tmp, monkeypatch: (tmp / "mine").write_text("x"),
    ),
    "a folder dataset of one image per class (every score 1.0)": Case(
        ["prepare", "--dataset", "mine"],
        ["{tmp}/mine: every class has one image", "2 clusters scores 1.0", "at least 2 images in every class"],
        folder_dataset("mine", "folder", "mine"),
        lambda tmp, monkeypatch: (png(tmp / "mine" / "cat" / "a.png"), png(tmp / "mine" / "dog" / "a.png")),
    ),
    "images_per_class: 1 (every score 1.0)": Case(
        ["prepare", "--dataset", "mine"],
        ["every class has one image", "set images_per_class to 2 or more"],
        with_images_per_class("mine", "folder", "mine", 1),
        two_small_classes,
    ),
    "a floating-point image (TIFF data under a .png name)": Case(
        ["prepare", "--dataset", "mine"],
        ["cannot read image {tmp}/mine/dog/deep.png", "PIL mode F", "save the images as 8- or 16-bit PNG"],
        folder_dataset("mine", "folder", "mine"),
        lambda tmp, monkeypatch: (
            two_small_classes(tmp, monkeypatch),
            Image.fromarray(np.full((6, 6), 0.5, np.float32)).save(tmp / "mine" / "dog" / "deep.png", format="TIFF"),
        ),
    ),
    "unknown method": Case(
        PREPARE,
        ["variants.cd.method", "unknown method 'nope'", "known: cc, cd, cdc"],
        lambda params, tmp: params["variants"]["cd"].update(method="nope"),
    ),
    "a CD switch on another method's variant": Case(
        PREPARE,
        ["variants.sim.entropy", "'entropy' is an option of cd, not of simclr", "options of simclr: none"],
        add_variant("sim", method="simclr", entropy=False),
    ),
    "a method option of the wrong type": Case(
        PREPARE,
        ["methods.cd.feature_num", "not valid"],
        lambda params, tmp: params["methods"]["cd"].update(feature_num=-3),
    ),
    "CLD groups not below the batch": Case(
        PREPARE,
        ["runs[1]", "K = 256 groups for a batch of 256", "half_batch"],
        lambda params, tmp: (
            params["variants"].update(cld={"method": "cld", "groups": "batch_size"}),
            params["runs"].append({"dataset": "digits", "batch_size": 256, "variant": "cld", "seed": 1}),
        ),
    ),
    "a bit-flipped prepared array": Case(
        ["train", "--run", RID],
        ["digits.npz is damaged", "SHA-256", "cdrepro prepare --dataset digits"],
        setup=flip_prepared_byte,
        prepare_first=True,
    ),
    "damaged prepared metadata": Case(
        ["train", "--run", RID],
        ["digits.json is damaged", "cdrepro prepare --dataset digits"],
        setup=damaged_prepared_metadata,
        prepare_first=True,
    ),
    "a truncated checkpoint": Case(
        ["train", "--run", RID],
        [f"{RID}/checkpoint.pt is damaged", "delete it"],
        setup=truncated_checkpoint,
        prepare_first=True,
    ),
    "metrics.json that is not JSON": Case(
        ["tables"],
        [f"{RID}/metrics.json", f"cdrepro evaluate --run {RID}"],
        setup=metrics_file("{"),
        prepare_first=True,
    ),
    "metrics.json of the wrong shape": Case(
        ["tables"],
        [f"{RID}/metrics.json", f"cdrepro evaluate --run {RID}"],
        setup=metrics_file('{"stages": 3}'),
        prepare_first=True,
    ),
    "the runs folder is a file": Case(
        ["train", "--run", RID],
        ["results/embedded/runs", "check that path"],
        setup=runs_folder_is_a_file,
        prepare_first=True,
    ),
    "missing GPU demanded by the config": Case(
        ["train", "--run", RID],
        ["train.device is 'cuda'", "no CUDA GPU", "set train.device to 'auto' or 'cpu'"],
        set_in("train", device="cuda"),
        no_gpu,
        prepare_first=True,
    ),
    "a full disk while evaluating (not advised as if training)": Case(
        ["evaluate", "--run", RID],
        ["disk is full", f"{RID}/metrics.json", "run cdrepro evaluate again", "the trained model is untouched"],
        setup=after(["split", "--dataset", "digits"], ["train", "--run", RID], then=disk_full_writing("metrics.json")),
        prepare_first=True,
    ),
    "a model trained on other data than is prepared now": Case(
        ["evaluate", "--run", RID],
        [f"{RID}/model.pt was trained with other data", f"cdrepro train --run {RID}"],
        stamped_file("model"),
        prepare_first=True,
    ),
    "metrics made under other settings than the params give now": Case(
        ["tables"],
        [f"run {RID}'s metrics were made with other settings", f"cdrepro evaluate --run {RID}"],
        stamped_file("metrics", settings_digest="0" * 16),
        prepare_first=True,
    ),
    "a kNN k larger than the train split": Case(
        ["split", "--dataset", "digits"],
        ["evaluate.knn.k=2000", "digits's train split of 1438 images", "set evaluate.knn.k <= 1438"],
        set_in("evaluate", knn={"k": 2000}),
        prepare_first=True,
    ),
    "an imbalance ratio below 1": Case(
        ["train", "--run", RID],
        ["datasets.digits.long_tail.imbalance_ratio", "at least 1", "e.g. 10 or 100"],
        set_dataset(train_on="train", long_tail={"imbalance_ratio": 0.5, "seed": 0}),
        prepare_first=True,
    ),
    "a long tail of every image, test split included": Case(
        ["train", "--run", RID],
        ["datasets.digits.long_tail", "needs datasets.digits.train_on: train"],
        set_dataset(long_tail={"imbalance_ratio": 10, "seed": 0}),
        prepare_first=True,
    ),
    "an imbalance ratio that leaves the tail class no image": Case(
        ["train", "--run", RID],
        ["datasets.digits.long_tail.imbalance_ratio", "leaves the last class none", "pass imbalance_ratio <="],
        set_dataset(train_on="train", long_tail={"imbalance_ratio": 1000, "seed": 0}),
        prepare_first=True,
    ),
    "a test split with classes the train split lacks": Case(
        ["split", "--dataset", "digits"],
        ["dataset digits: the test split has classes the train split lacks: 9 (9)"],
        setup=train_split_lacks_class_9,
        prepare_first=True,
    ),
    "a test folder with a class the train folder lacks": Case(
        ["split", "--dataset", "mine"],
        ["dataset mine: the test split has classes the train split lacks: emu (2)", "give the train split images"],
        folder_whose_test_folder_has_a_class_the_train_lacks,
    ),
    "a split of other data than is prepared now": Case(
        ["evaluate", "--run", RID],
        ["digits.split.json was drawn from other data", "cdrepro split --dataset digits"],
        setup=after(["split", "--dataset", "digits"], ["train", "--run", RID], then=lambda tmp, mp: stale_split(tmp)),
        prepare_first=True,
    ),
    "a curves.csv of its header only": Case(
        ["figures"],
        [f"{RID}/curves.csv holds no epochs", f"write it again with cdrepro train --run {RID}"],
        setup=after(
            ["baseline", "--dataset", "digits"],
            ["split", "--dataset", "digits"],
            ["train", "--run", RID],
            ["evaluate", "--run", RID],
            then=header_only_curves,
        ),
        prepare_first=True,
    ),
}


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture
def params(embedded_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["data"]["download_dir"] = str(tmp_path / "downloads")
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=1, image_size=16, device="cpu")
    embedded_params["runs"] = [vars(RUN).copy()]
    return embedded_params


def write_params(params: dict) -> None:
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file (hidden temporary ones included) under ``folders``, with its content."""
    return {
        str(p): p.read_bytes()
        for folder in folders
        if folder.exists()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(params, tmp_path, capsys, monkeypatch, case):
    spec = CASES[case]
    if spec.prepare_first:
        write_params(params)
        assert main(PREPARE) == 0
    spec.break_params(params, tmp_path)
    spec.setup(tmp_path, monkeypatch)
    write_params(params)
    results, downloads = ProfilePaths.from_params(params).root, tmp_path / "downloads"
    before = snapshot(results, downloads)
    capsys.readouterr()

    code = main(spec.command)

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    line = lines[0]
    assert line.startswith(f"cdrepro {spec.command[0]}: error: "), line
    for expected in spec.expect:
        assert expected.format(tmp=tmp_path) in line, f"{expected!r} not in {line!r}"
    assert snapshot(results, downloads) == before, "a failed command changed the results or downloads"
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_a_key_given_twice_in_the_params_is_refused_naming_both_lines(params, tmp_path, capsys):
    write_params(params)
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "profile: other\n")
    assert main(["validate"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "params.yaml" in line and "found the key 'profile' twice" in line, line
    assert not (tmp_path / "results").exists()


# --- safe loading (issue 5, item 6): checkpoints never run pickled code --------------------------

SRC = Path(__file__).resolve().parents[1] / "src" / "cdrepro"


class RunsCode:
    """Unpickling this calls os.mkdir(marker): harmless, but visible if it ever happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return os.mkdir, (str(self.marker),)


def test_every_torch_load_in_the_package_passes_weights_only_true():
    """torch >= 2.6 defaults to weights_only=True, but the package must not depend on the
    default: a call without it (or with False) fails here, naming file and line."""
    import ast

    calls = []
    for source in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                calls.append((f"{source.relative_to(SRC.parent)}:{node.lineno}", safe))
    assert calls, "no torch.load found: has the package moved?"
    assert [where for where, safe in calls if not safe] == []


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    import pickle

    from cdrepro.checkpoint import UnsafeCheckpoint, load_state, resume_or_set_aside
    from cdrepro.evaluate import load_model
    from cdrepro.identity import RunIdentity
    from cdrepro.run_settings import resolve_run

    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"settings_digest": "x", "model": {}, "payload": RunsCode(marker)}, path)
    settings = resolve_run(yaml.safe_load((SRC.parents[1] / "params.yaml").read_text()), RUN)
    identity, data = RunIdentity("x", "y"), SimpleNamespace(digest="y", num_classes=10)
    loads = (
        lambda: load_state(path, identity),
        lambda: resume_or_set_aside(path, identity),
        lambda: load_model(path, settings, data),
    )
    for load in loads:
        with pytest.raises(UnsafeCheckpoint, match="refused.*delete it") as excinfo:
            load()
        assert isinstance(excinfo.value.__cause__, pickle.UnpicklingError)
        assert "weights_only=False" not in str(excinfo.value)
    assert not marker.exists(), "unpickling ran code from the checkpoint"
    assert path.exists()  # not set aside as stale either: it is an error the user must see
