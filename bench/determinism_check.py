"""Does ``train.deterministic: true`` make GPU training repeatable? Train one run twice, compare.

Trains the run (from a params file) for a few epochs twice in one process, with deterministic
kernels and then without, and reports, for each mode, whether the two final models are
bit-identical and the largest weight difference. On the CPU both modes are repeatable.

    python bench/determinism_check.py bench/gpu_check.yaml cifar10s-bs256-cd-s42 --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from cdrepro.checkpoint import load_weights_only
from cdrepro.config import load_params
from cdrepro.run_settings import find_run, resolve_run
from cdrepro.runs import ProfilePaths
from cdrepro.train import RunFiles, train


def train_once(settings, prepared: Path, folder: Path) -> dict[str, torch.Tensor]:
    files = RunFiles(folder / "checkpoint.pt", folder / "model.pt", folder / "curves.csv", folder / "train.json")
    train(settings, prepared, files, progress=False)
    return load_weights_only(files.model)["model"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("params")
    p.add_argument("run")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()
    params = load_params(args.params)
    base = resolve_run(params, find_run(params, args.run))
    prepared = ProfilePaths.from_params(params).prepared(base.dataset)
    report = {}
    for deterministic in (True, False):
        settings = dataclasses.replace(base, epochs=args.epochs, deterministic=deterministic, compile="none")
        with tempfile.TemporaryDirectory() as tmp:
            first = train_once(settings, prepared, Path(tmp) / "a")
            second = train_once(settings, prepared, Path(tmp) / "b")
        identical = all(torch.equal(first[k], second[k]) for k in first)
        report["deterministic" if deterministic else "default"] = {
            "bit_identical": identical,
            "max_abs_difference": largest_difference(first, second),
        }
        print(
            f"deterministic={deterministic}: bit-identical {identical}, "
            f"largest weight difference {largest_difference(first, second):.3g}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
