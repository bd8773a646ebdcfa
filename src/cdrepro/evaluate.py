"""Embed every image, cluster with K-means, score against the labels.

Unlike the authors' evaluation loader, which drops the last incomplete batch, every image is
embedded and scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans

from cdrepro import augment as aug
from cdrepro.checkpoint import load_weights_only
from cdrepro.config import RunSettings
from cdrepro.data.prepared import PreparedDataset, load_prepared
from cdrepro.device import autocast, select_device
from cdrepro.kmeans import kmeans
from cdrepro.metrics import clustering_scores
from cdrepro.model import ContrastiveDisentangling, build_model


def load_model(path: Path, settings: RunSettings) -> ContrastiveDisentangling:
    """Rebuild the run's model and load its final weights (``weights_only=True``)."""
    state = load_weights_only(path)
    if state.get("settings_digest") != settings.digest():
        raise RuntimeError(
            f"{path} was trained with other settings than run {settings.run_id} has now; "
            "re-run its training (delete the run's folder) before evaluating"
        )
    model = build_model(settings)
    model.load_state_dict(state["model"])
    return model


@torch.no_grad()
def embed(model: ContrastiveDisentangling, images: np.ndarray, image_size: int, batch_size: int,
          device: torch.device, precision: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Backbone outputs h and final outputs (f, or z without a head) for every image.

    images: (N, H, W, 3) uint8. Returns float32 arrays (N, rep_dim) and (N, K or hidden_dim).
    """
    model.eval().to(device)
    backbone, final = [], []
    for start in range(0, len(images), batch_size):  # the last partial batch is kept
        batch = torch.from_numpy(images[start:start + batch_size]).to(device)
        x = aug.eval_transform(aug.to_float(batch), image_size)  # (B, 3, S, S)
        with autocast(device, precision):
            out = model(x)
        backbone.append(out.h.float().cpu())
        final.append((out.f if out.f is not None else out.z).float().cpu())
    return torch.cat(backbone).numpy(), torch.cat(final).numpy()


# Largest float64 copy of the features scikit-learn's K-means gets (bytes); above it, float32.
FLOAT64_COPY_LIMIT = 2 * 1024**3


def kmeans_device(backend: str, device: torch.device) -> torch.device | None:
    """Where K-means runs: a torch device, or None for scikit-learn (the CPU path).

    ``auto`` uses the GPU when evaluation runs on one; ``torch`` forces cdrepro.kmeans on the
    evaluation device (the CPU included, which is how its tests run without a GPU)."""
    if backend == "sklearn" or (backend == "auto" and device.type != "cuda"):
        return None
    return device


def kmeans_scores(features: np.ndarray, labels: np.ndarray, n_clusters: int, n_init: int,
                  seed: int, device: torch.device | None = None) -> dict[str, float]:
    """K-means (k = number of classes) on raw features, scored by NMI/ARI/ACC.

    ``device`` None: scikit-learn, in float64 where that copy stays small (every embedding, and
    the pixels of small images), else in the features' own float32: ImageNet-10's pixels at
    256 px would take 20 GB in float64. Otherwise cdrepro.kmeans on that device."""
    if device is None:
        if features.size * 8 <= FLOAT64_COPY_LIMIT:
            features = features.astype(np.float64, copy=False)
        clusters = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(features)
    else:
        fit = kmeans(torch.from_numpy(features).to(device), n_clusters, n_init=n_init, seed=seed)
        clusters = fit.labels.cpu().numpy()
    return clustering_scores(labels, clusters)


def evaluate(settings: RunSettings, prepared: Path, model_path: Path, eval_params: dict[str, Any],
             threads: int | None = None) -> dict[str, Any]:
    """The metrics of a run's own trained model (``model.pt``)."""
    return evaluate_model(load_model(model_path, settings), settings, prepared, eval_params, threads)


def evaluate_model(model: ContrastiveDisentangling, settings: RunSettings, prepared: Path,
                   eval_params: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """The metrics of a loaded model with the run's architecture (a released checkpoint, say)."""
    if threads:
        torch.set_num_threads(threads)
    device = select_device(settings.device)
    data = load_prepared(prepared)
    h, final = embed(model, data.images, settings.image_size, eval_params["batch_size"], device,
                     settings.precision)
    k, n_init, seed = data.num_classes, eval_params["kmeans_n_init"], eval_params["kmeans_seed"]
    on = kmeans_device(eval_params.get("kmeans_backend", "auto"), device)
    return {
        "run_id": settings.run_id,
        "dataset": settings.dataset,
        "batch_size": settings.batch_size,
        "variant": settings.variant,
        "seed": settings.seed,
        "n_images": len(data),
        "num_classes": k,
        "backbone": kmeans_scores(h, data.labels, k, n_init, seed, on),
        "feature": kmeans_scores(final, data.labels, k, n_init, seed, on),
        "feature_stage": "feature" if settings.head else "projector",
    }


def pixel_baseline(data: PreparedDataset, eval_params: dict[str, Any]) -> dict[str, Any]:
    """The paper's "K-means" column: K-means on the stored pixels scaled to [0, 1]."""
    pixels = data.images.reshape(len(data), -1).astype(np.float32) / 255.0
    return {
        "dataset": data.name,
        "n_images": len(data),
        "num_classes": data.num_classes,
        "pixels": kmeans_scores(pixels, data.labels, data.num_classes,
                                eval_params["kmeans_n_init"], eval_params["kmeans_seed"]),
    }


def pixel_baseline_file(prepared: Path, eval_params: dict[str, Any]) -> dict[str, Any]:
    return pixel_baseline(load_prepared(prepared), eval_params)
