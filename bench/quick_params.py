"""The params file of the GPU comparison (bench/gpu_session.sh quick), derived from the quick
profile (workflow/configs/quick.yaml) so that no training setting is copied by hand.

What changes, and why:
  - the dataset reads the 50,000 CIFAR-10 training images unpacked from the archive (a folder
    source), since nothing can be downloaded on the GPU machine;
  - train.device, train.epochs (what fits the window), profile and results_dir (where it goes);
  - ``--set key.path=value`` (a YAML value) and ``--batch-size``: only for the CPU test's tiny
    size, never on the GPU.
Everything else (model, augmentation, optimiser, evaluation, variants, runs) is quick.yaml's.

    python bench/quick_params.py --folder data/cifar10-train --epochs 30 --device cuda \
        --out results/gpu_session/files/quick-gpu.yaml
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "workflow" / "configs" / "quick.yaml"
DATASET = "cifar10"


def set_dotted(params: dict[str, Any], assignment: str) -> None:
    """``a.b.c=value``: params["a"]["b"]["c"] = the YAML value (a missing level is created)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {assignment!r}: expected key.path=value")
    *parents, last = key.split(".")
    node = params
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = yaml.safe_load(value)


def derive(
    base: dict[str, Any],
    folder: str,
    epochs: int,
    device: str,
    images_per_class: int | None,
    profile: str = "quick-gpu",
    results_dir: str | None = None,
    sets: tuple[str, ...] = (),
    batch_size: int | None = None,
) -> dict[str, Any]:
    """quick.yaml's params with the changes named in the module's docstring."""
    params = copy.deepcopy(base)
    params["profile"] = profile
    if results_dir:
        params["results_dir"] = results_dir
    params["data"]["download"] = False
    dataset = params["datasets"][DATASET]
    dataset.update(source="folder", path=folder)
    if images_per_class:
        dataset["images_per_class"] = images_per_class
    params["train"].update(device=device, epochs=epochs)
    for run in params["runs"]:
        if batch_size:
            run["batch_size"] = batch_size
    for assignment in sets:
        set_dotted(params, assignment)
    return params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=str(BASE), help="the profile to derive from (quick.yaml)")
    p.add_argument("--folder", required=True, help="the unpacked images: <folder>/<class>/<image>")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--images-per-class", type=int, default=None)
    p.add_argument("--profile", default="quick-gpu")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--batch-size", type=int, default=None, help="every run's (CPU test only)")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cdrepro.config import validate_params  # refuses a setting the pipeline would refuse

    params = derive(
        yaml.safe_load(Path(args.base).read_text()),
        args.folder,
        args.epochs,
        args.device,
        args.images_per_class,
        args.profile,
        args.results_dir,
        tuple(args.sets),
        args.batch_size,
    )
    validate_params(copy.deepcopy(params))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Derived from {Path(args.base).name} by bench/quick_params.py\n" + yaml.safe_dump(params, sort_keys=False)
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
