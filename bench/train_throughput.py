"""Training throughput of Contrastive Disentangling: the authors' input path against ours.

In one process, on one device, times one training step (both views through the model, the CD
losses, Adam, backward, step: what ``cdrepro.train.train`` does per step) fed three ways:

  (a) reference  -- what the authors' code does: a torch Dataset over the uint8 images that
                    converts each image to PIL and runs torchvision's per-image transforms twice
                    (two views), in a DataLoader with ``--workers`` workers; fp32 model step.
  (b) ours       -- the uint8 images live on the device; ``cdrepro.augment.augment`` makes both
                    views for the whole batch there; model step under
                    ``cdrepro.device.autocast(device, "auto")`` (bf16 on CUDA, fp32 on CPU).
  (c) model_only -- the model step of (b) on two synthetic views already on the device: the
                    upper bound for any input path.
  augment_only   -- (b)'s input path alone (index, to float, both views), no model: what the
                    input path costs per pair, i.e. how far it can pull (b) below (c).

``--compile`` torch.compiles the augmentation and/or the model of (b), (c) and augment_only,
as ``train.compile`` does in cdrepro.train, on CUDA only (never (a): the authors' code has no
compile). The default, augment, is the params' default.

Throughput is image pairs per second over ``--steps`` timed steps after ``--warmup`` steps
(CUDA is synchronised before and after the timed loop). It also times K-means (k-means++,
n_init=10) on (n, 512) features drawn around k centres: scikit-learn's KMeans, and
``cdrepro.kmeans`` on the device, with the inertia of each and the agreement of their labels.
Prints a table and, with ``--json``, writes every setting and result. See bench/README.md.

    python bench/train_throughput.py --device cuda --backbone resnet34 --image-size 224 \
        --batch-size 256 --json results/bench/b256.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
import torchvision
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from cdrepro import augment as aug
from cdrepro.device import DeviceUnavailable, select_device
from cdrepro.kmeans import kmeans as torch_kmeans
from cdrepro.methods import METHODS, build_method
from cdrepro.run_settings import RunSettings, resolve_run
from cdrepro.runs import Run
from cdrepro.step import augment_config, make_optimizer, train_step

PATHS = ("reference", "ours", "model_only", "augment_only")
LABELS = {
    "reference": "(a) reference: PIL + DataLoader, fp32",
    "ours": "(b) ours: on-device augment + autocast",
    "model_only": "(c) model only: synthetic views on device",
    "augment_only": "    input path of (b) alone, no model",
}
FEATURE_DIM = 512


# --------------------------------------------------------------------------- settings


def run_settings(args: argparse.Namespace) -> RunSettings:
    """A run of --method (CD by default: its 'cd' variant, the paper's hyper-parameters) at the
    benchmark's size, the method's options at their defaults."""
    params: dict[str, Any] = {
        "datasets": {
            "bench": {
                "source": "synthetic",
                "color_strength": args.color_strength,
                "blur": args.blur,
                "crop_min_scale": 0.08,
            }
        },
        "variants": {args.method: {"method": args.method}},
        "methods": {"cd": {"feature_num": "batch_size", "feature_temperature": 1.0, "entropy_weight": 1.0}},
        "model": {
            "backbone": args.backbone,
            "backbone_width": args.width,
            "stem": args.stem,
            "hidden_dim": "batch_size",
        },
        "train": {
            "epochs": 1,
            "image_size": args.image_size,
            "lr": 3.0e-4,
            "weight_decay": 0.0,
            "instance_temperature": 0.5,
            "grad_clip_norm": 1.0,
            "device": args.device,
            "precision": "auto",
        },
    }
    return resolve_run(params, Run(dataset="bench", batch_size=args.batch_size, variant=args.method, seed=args.seed))


def load_images(args: argparse.Namespace) -> np.ndarray:
    """(N, H, W, 3) uint8: a prepared dataset, or random images of --store-size."""
    if args.prepared:
        from cdrepro.data.prepared import load_prepared

        return load_prepared(Path(args.prepared)).images
    rng = np.random.default_rng(args.seed)
    size = args.store_size
    return rng.integers(0, 256, size=(args.n_images, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- the model step


class Step:
    """One training step of cdrepro.train (``cdrepro.step.train_step``) on a model set up as
    cdrepro.train sets it up, or as the authors' code does (fp32, no channels-last)."""

    def __init__(
        self,
        settings: RunSettings,
        device: torch.device,
        precision: str,
        compile_model: bool = False,
        num_classes: int = 10,
    ) -> None:
        torch.manual_seed(settings.seed)
        self.precision = precision
        self.model = build_method(settings, num_classes).to(device)
        self.model.train()
        # Ours (any precision but the reference's fp32) on a GPU: as cdrepro.train sets it up.
        ours_on_gpu = device.type == "cuda" and precision != "fp32"
        if ours_on_gpu:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, fused=ours_on_gpu)
        self.forward = torch.compile(self.model) if compile_model else self.model

    def __call__(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        terms = train_step(self.model, self.forward, self.optimizer, view1, view2, self.precision)
        return terms["loss"].detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    device: torch.device, batch_size: int, warmup: int, steps: int, one_step: Callable[[], torch.Tensor]
) -> dict[str, Any]:
    """Run ``warmup`` then ``steps`` steps; time the latter (synchronised on CUDA)."""
    loss = None
    for _ in range(warmup):
        loss = one_step()
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        loss = one_step()
    sync(device)
    seconds = time.perf_counter() - started
    last_loss = float(loss) if loss is not None else float("nan")  # after timing: no sync inside
    return {
        "seconds": seconds,
        "steps": steps,
        "pairs": steps * batch_size,
        "pairs_per_s": steps * batch_size / seconds,
        "last_loss": last_loss,
    }


# --------------------------------------------------------------------------- (a) reference


def reference_transform(settings: RunSettings, version: str):
    """The authors' per-image view transform (SPEC: augmentation), torchvision v1 or v2."""
    if version == "v2":
        from torchvision.transforms import v2 as T

        to_tensor = [T.ToImage(), T.ToDtype(torch.float32, scale=True)]
    else:
        import torchvision.transforms as T

        to_tensor = [T.ToTensor()]
    strength = settings.color_strength
    ops = [
        T.RandomResizedCrop(settings.image_size, scale=(settings.crop_min_scale, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if settings.blur:
        ops.append(T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5))
    return T.Compose(ops + to_tensor)


class PilPairs(torch.utils.data.Dataset):
    """uint8 images -> PIL -> two independently augmented views, as the authors' loader."""

    def __init__(self, images: np.ndarray, transform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.images[index])
        return self.transform(image), self.transform(image)


def endless(loader: torch.utils.data.DataLoader) -> Iterator:
    while True:
        yield from loader


def bench_reference(args, settings, device, images) -> dict[str, Any]:
    # The authors' code runs cudnn deterministic; restored after.
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    loader = torch.utils.data.DataLoader(
        PilPairs(images, reference_transform(settings, args.transforms)),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    batches = endless(loader)
    step = Step(settings, device, "fp32")

    def one_step() -> torch.Tensor:
        view1, view2 = next(batches)
        return step(view1.to(device, non_blocking=True), view2.to(device, non_blocking=True))

    try:
        return timed(device, settings.batch_size, args.warmup, args.steps, one_step)
    finally:
        batches.close()  # ends the loader's iterator: its workers shut down
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


# --------------------------------------------------------------------------- (b) ours


def compiles(args: argparse.Namespace, part: str) -> bool:
    return args.compile in (part, "all")


def device_views(args, settings, device, images) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """(b)'s input path, as cdrepro.train: a permutation per epoch, index, both views."""
    data = torch.from_numpy(images).to(device)  # (N, H, W, 3) uint8 on the device
    n_images = data.shape[0]
    shuffle_gen = torch.Generator().manual_seed(settings.seed)
    augment_gen = torch.Generator(device=device).manual_seed(settings.seed + 1)
    make_view = aug.view_maker(augment_config(settings), compile=compiles(args, "augment"))
    steps_per_epoch = n_images // settings.batch_size
    state = {"order": None, "at": steps_per_epoch}

    def views() -> tuple[torch.Tensor, torch.Tensor]:
        if state["at"] == steps_per_epoch:  # a new epoch: one permutation
            state["order"] = torch.randperm(n_images, generator=shuffle_gen).to(device)
            state["at"] = 0
        b = settings.batch_size
        index = state["order"][state["at"] * b : (state["at"] + 1) * b]
        state["at"] += 1
        x = aug.to_float(data[index])  # (B, 3, H, W)
        return make_view(x, augment_gen), make_view(x, augment_gen)

    return views


def bench_ours(args, settings, device, images) -> dict[str, Any]:
    views = device_views(args, settings, device, images)
    step = Step(settings, device, "auto", compile_model=compiles(args, "model"))
    return timed(device, settings.batch_size, args.warmup, args.steps, lambda: step(*views()))


def bench_augment_only(args, settings, device, images) -> dict[str, Any]:
    views = device_views(args, settings, device, images)

    def one_step() -> torch.Tensor:
        view1, view2 = views()
        return view1[0, 0, 0, 0] + view2[0, 0, 0, 0]  # a value to hand back, no host sync

    return timed(device, settings.batch_size, args.warmup, args.steps, one_step)


# --------------------------------------------------------------------------- (c) model only


def bench_model_only(args, settings, device, images) -> dict[str, Any]:
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    shape = (settings.batch_size, 3, settings.image_size, settings.image_size)
    view1 = torch.rand(shape, device=device, generator=gen)
    view2 = torch.rand(shape, device=device, generator=gen)
    step = Step(settings, device, "auto", compile_model=compiles(args, "model"))
    return timed(device, settings.batch_size, args.warmup, args.steps, lambda: step(view1, view2))


# --------------------------------------------------------------------------- K-means


def clustered_features(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 512) float32 features around k random centres (overlapping, as real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, FEATURE_DIM)).astype(np.float32) * 0.25
    labels = rng.integers(0, k, size=n)
    noise = rng.standard_normal((n, FEATURE_DIM), dtype=np.float32)
    return centres[labels] + noise * 0.5, labels


def bench_kmeans(args, device: torch.device) -> dict[str, Any]:
    """scikit-learn's KMeans and cdrepro.kmeans on ``device``, same data, same n_init."""
    features, truth = clustered_features(args.kmeans_n, args.kmeans_k, args.seed)
    report: dict[str, Any] = {"n": args.kmeans_n, "d": FEATURE_DIM, "k": args.kmeans_k, "n_init": 10}
    started = time.perf_counter()
    km = KMeans(n_clusters=args.kmeans_k, n_init=10, random_state=args.seed).fit(features)
    report["sklearn"] = {
        "seconds": time.perf_counter() - started,
        "inertia": float(km.inertia_),
        "iterations": int(km.n_iter_),
        "nmi_to_truth": normalized_mutual_info_score(truth, km.labels_),
    }
    on_device = torch.from_numpy(features).to(device)
    torch_kmeans(on_device, args.kmeans_k, n_init=1, seed=args.seed)  # warm-up: kernels, handles
    sync(device)
    started = time.perf_counter()
    fit = torch_kmeans(on_device, args.kmeans_k, n_init=10, seed=args.seed)
    sync(device)
    labels = fit.labels.cpu().numpy()
    report["torch"] = {
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "inertia": fit.inertia,
        "iterations": fit.n_iter,
        "nmi_to_truth": normalized_mutual_info_score(truth, labels),
        "nmi_to_sklearn": normalized_mutual_info_score(km.labels_, labels),
    }
    report["inertia_ratio"] = fit.inertia / report["sklearn"]["inertia"]
    return report


# --------------------------------------------------------------------------- report


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    ref = results.get("reference", {}).get("pairs_per_s")
    top = results.get("model_only", {}).get("pairs_per_s")
    for result in results.values():
        result["ratio_to_reference"] = result["pairs_per_s"] / ref if ref else None
        result["ratio_to_model_only"] = result["pairs_per_s"] / top if top else None


def table(results: dict[str, dict[str, Any]], kmeans: dict[str, Any]) -> str:
    def ratio(value: float | None) -> str:
        return f"{value:>8.2f}" if value is not None else f"{'-':>8}"

    lines = [f"{'path':<45} {'pairs/s':>10} {'x (a)':>8} {'x (c)':>8}", "-" * 74]
    for name in PATHS:
        if name in results:
            r = results[name]
            lines.append(
                f"{LABELS[name]:<45} {r['pairs_per_s']:>10.1f} "
                f"{ratio(r['ratio_to_reference'])} {ratio(r['ratio_to_model_only'])}"
            )
    if kmeans:
        sk, tk = kmeans["sklearn"], kmeans["torch"]
        lines.append(
            f"K-means {kmeans['n']} x {kmeans['d']}, k={kmeans['k']}, n_init=10: "
            f"sklearn {sk['seconds']:.2f} s, cdrepro.kmeans ({tk['device']}) "
            f"{tk['seconds']:.2f} s; inertia ratio {kmeans['inertia_ratio']:.4f}, "
            f"NMI between them {tk['nmi_to_sklearn']:.3f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument(
        "--method", choices=sorted(METHODS), default="cd", help="the method whose training step is timed (default: cd)"
    )
    p.add_argument("--backbone", choices=("resnet18", "resnet34"), default="resnet34")
    p.add_argument("--width", type=int, default=64, help="backbone_width (64: torchvision's)")
    p.add_argument(
        "--stem",
        choices=("imagenet", "cifar"),
        default="imagenet",
        help="model.stem: cifar = 3x3 stride-1 first convolution, no max-pool",
    )
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps per path")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of (a); default 4 on CUDA, 2 on CPU")
    p.add_argument(
        "--compile",
        choices=("none", "augment", "model", "all"),
        default="augment",
        help="torch.compile (b)'s augmentation and/or the model of (b) and (c), on "
        "CUDA only, as train.compile (default: augment, the params' default)",
    )
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    p.add_argument("--no-kmeans", action="store_true", help="skip the K-means timing")
    p.add_argument("--transforms", choices=("v1", "v2"), default="v1", help="torchvision.transforms API for (a)")
    p.add_argument("--store-size", type=int, default=32, help="side of the synthetic images")
    p.add_argument("--n-images", type=int, default=2048, help="number of synthetic images")
    p.add_argument("--prepared", help="a prepared dataset (.npz) instead of synthetic images")
    p.add_argument("--color-strength", type=float, default=0.5, help="s (0.5 CIFAR, 1.0 STL/ImageNet)")
    p.add_argument("--blur", action="store_true", help="add GaussianBlur(23) p=0.5 (ImageNet-10)")
    p.add_argument("--kmeans-n", type=int, default=None, help="K-means points; default 60000 on CUDA, 10000 on CPU")
    p.add_argument("--kmeans-k", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write settings and results here")
    args = p.parse_args(argv)
    for name in ("width", "image_size", "batch_size", "steps", "store_size", "n_images", "kmeans_k"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown or not args.paths:
        p.error(f"--paths: unknown {unknown}; choose from {', '.join(PATHS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = select_device(args.device)
    except DeviceUnavailable as exc:
        raise SystemExit(f"train_throughput: {exc}") from None
    if device.type != "cuda":
        args.compile = "none"  # as cdrepro.train: compiling is for the GPU
    if args.workers is None:
        args.workers = 4 if device.type == "cuda" else 2
    if args.kmeans_n is None:
        args.kmeans_n = 60000 if device.type == "cuda" else 10000
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = run_settings(args)
    images = load_images(args)
    if settings.batch_size > len(images):
        raise SystemExit(f"--batch-size {settings.batch_size} is larger than the dataset ({len(images)} images)")

    results: dict[str, dict[str, Any]] = {}
    benches = {
        "reference": bench_reference,
        "ours": bench_ours,
        "model_only": bench_model_only,
        "augment_only": bench_augment_only,
    }
    for name in [n for n in PATHS if n in args.paths]:
        bench = benches[name]
        if device.type == "cuda":  # ours and model_only run with cudnn autotuning
            torch.backends.cudnn.benchmark = True
        results[name] = {"label": LABELS[name], **bench(args, settings, device, images)}
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{name}: {results[name]['pairs_per_s']:.1f} pairs/s", file=sys.stderr, flush=True)
    for name, r in results.items():
        if not (math.isfinite(r["pairs_per_s"]) and r["pairs_per_s"] > 0):
            raise SystemExit(f"{name}: non-positive or non-finite throughput: {r}")
    add_ratios(results)
    kmeans = {} if args.no_kmeans else bench_kmeans(args, device)

    print(table(results, kmeans))
    report = {
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "settings": {
            **vars(args),
            "images_shape": list(images.shape),
            "precision": {
                "reference": "fp32",
                "ours": "bf16 autocast" if device.type == "cuda" else "fp32",
                "model_only": "bf16 autocast" if device.type == "cuda" else "fp32",
                "augment_only": "fp32",
            },
            "run": settings.to_dict(),
        },
        "results": results,
        "kmeans": kmeans,
    }
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
