"""Real CIFAR-10 photographs through the folder source, then one epoch of every method.

The images come from the shared training archive (``../shared/data/cifar10-train.tar.gz``, see
its README): a few hundred are unpacked, prepared as the quick profiles prepare them (folder
source, ``images_per_class``, their own 32 px) and trained with the CIFAR stem.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from cdrepro.cli import main
from cdrepro.methods import METHODS
from cdrepro.runs import ProfilePaths

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-train.tar.gz"
IMAGES_PER_CLASS = 30
QUICK_CPU = REPO / "workflow/configs/quick-cpu.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unpack_first_images(archive: Path, into: Path, per_class: int) -> Path:
    """The first ``per_class`` members of each class folder, in archive order (one pass)."""
    taken: dict[str, int] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10-train/<class>/<index>.jpg
            if not member.isfile() or len(parts) != 3 or taken.get(parts[1], 0) >= per_class:
                continue
            taken[parts[1]] = taken.get(parts[1], 0) + 1
            target = into / parts[1] / parts[2]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return into


@pytest.fixture(scope="module")
def real_images(tmp_path_factory) -> Path:
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} is absent (only developers' machines and CI have the shared archive)")
    return unpack_first_images(ARCHIVE, tmp_path_factory.mktemp("cifar10-train"), IMAGES_PER_CLASS + 5)


def quick_cpu_params(images: Path, results: Path) -> dict:
    """The CPU rung's profile at test size: the same source, stem and methods, fewer images."""
    params = yaml.safe_load(QUICK_CPU.read_text())
    params.update(profile="real-images", results_dir=str(results))
    params["datasets"]["cifar10"].update(path=str(images), images_per_class=IMAGES_PER_CLASS)
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=1, cpu_threads=1)
    params["evaluate"].update(kmeans_n_init=1, knn={"k": 20})  # a bank of 80% of the few images
    params["variants"] = {name: {"method": name} for name in METHODS}
    params["runs"] = [{"dataset": "cifar10", "batch_size": 64, "variant": name, "seed": 0} for name in METHODS]
    return params


@pytest.mark.slow
def test_real_cifar10_images_prepare_and_every_method_trains_one_epoch(real_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = quick_cpu_params(real_images, tmp_path / "results")
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["prepare", "--dataset", "cifar10"]) == 0
    paths = ProfilePaths.from_params(params)
    meta = json.loads(paths.prepared_meta("cifar10").read_text())
    assert meta["n_images"] == 10 * IMAGES_PER_CLASS and meta["image_shape"][:2] == [32, 32], meta
    assert main(["split", "--dataset", "cifar10"]) == 0
    for run in params["runs"]:
        rid = f"cifar10-bs64-{run['variant']}-s0"
        assert main(["train", "--run", rid]) == 0, rid
        assert main(["evaluate", "--run", rid]) == 0, rid
        stages = json.loads((paths.run_dir(rid) / "metrics.json").read_text())["stages"]
        scores = [score for stage in stages.values() for score in stage.values()]
        assert scores and all(0.0 <= score <= 1.0 for score in scores), (rid, stages)
