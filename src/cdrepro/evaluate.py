"""Embed every image, cluster with K-means, score against the labels; then the held-out scores.

Unlike the authors' evaluation loader, which drops the last incomplete batch, every image is
embedded and scored. The K-means NMI/ARI/ACC are over every image (the paper's protocol); the
held-out scores use the dataset's split (``cdrepro.data.heldout``): weighted kNN accuracy of
every stage's output (the train split's features as the bank, on the evaluation device) and the
linear probe's accuracy on the backbone's (scikit-learn, on the CPU), each on the test split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from cdrepro import augment as aug
from cdrepro.checkpoint import load_weights_only
from cdrepro.data.heldout import HeldOutSplit, read_split
from cdrepro.data.prepared import PreparedDataset, load_prepared
from cdrepro.device import autocast, select_device
from cdrepro.identity import RunIdentity, is_legacy
from cdrepro.kmeans import kmeans
from cdrepro.knn import knn_accuracy
from cdrepro.linear_probe import linear_probe
from cdrepro.methods import Method, build_method
from cdrepro.methods.base import ARGMAX, BACKBONE_STAGE
from cdrepro.metrics import KNN, LINEAR, clustering_scores
from cdrepro.run_settings import RunSettings

log = logging.getLogger(__name__)


def load_model(path: Path, settings: RunSettings, data: PreparedDataset) -> Method:
    """Rebuild the run's model and load its final weights (``weights_only=True``); refused
    unless it was trained with these settings on this data."""
    state = load_weights_only(path)
    identity = RunIdentity(settings.digest(), data.digest)
    problem = identity.mismatch(state)
    if problem:
        raise RuntimeError(
            f"{path} was trained with {problem} than run {settings.run_id} has now; re-run its "
            f"training (`cdrepro train --run {settings.run_id}`, or the workflow) before evaluating"
        )
    if is_legacy(state):
        log.warning("%s predates data digests; taken as trained on the current data (%s)", path, data.digest)
    model = build_method(settings, data.num_classes)
    model.load_state_dict(state["model"])
    return model


@torch.no_grad()
def embed(
    model: Method,
    images: np.ndarray,
    image_size: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    outputs: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """The model's named outputs for every image, as float32 arrays (N, width).

    images: (N, H, W, 3) uint8. ``outputs``: which (default: those the method's stages read)."""
    names = outputs or tuple(dict.fromkeys(stage.output for stage in model.stages().values()))
    model.eval().to(device)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, len(images), batch_size):  # the last partial batch is kept
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        x = aug.eval_transform(aug.to_float(batch), image_size)  # (B, 3, S, S)
        with autocast(device, precision):
            out = model(x)
        for name in names:
            parts[name].append(out[name].float().cpu())
    return {name: torch.cat(chunks).numpy() for name, chunks in parts.items()}


# Largest float64 copy of the features scikit-learn's K-means gets (bytes); above it, float32.
FLOAT64_COPY_LIMIT = 2 * 1024**3


def kmeans_device(backend: str, device: torch.device) -> torch.device | None:
    """Where K-means runs: a torch device, or None for scikit-learn (the CPU path).

    ``auto`` uses the GPU when evaluation runs on one; ``torch`` forces cdrepro.kmeans on the
    evaluation device (the CPU included, which is how its tests run without a GPU)."""
    if backend == "sklearn" or (backend == "auto" and device.type != "cuda"):
        return None
    return device


def kmeans_scores(
    features: np.ndarray,
    labels: np.ndarray,
    n_clusters: int,
    n_init: int,
    seed: int,
    device: torch.device | None = None,
) -> dict[str, float]:
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


def stage_scores(
    model: Method,
    outputs: dict[str, np.ndarray],
    labels: np.ndarray,
    n_clusters: int,
    eval_params: dict[str, Any],
    device: torch.device | None,
) -> dict[str, dict[str, float]]:
    """NMI/ARI/ACC of every stage of the method, in its order: K-means (k = classes) on the
    stage's output, or, for an argmax stage, the output's own cluster assignment."""
    scores = {}
    for name, stage in model.stages().items():
        features = outputs[stage.output]
        if stage.assign == ARGMAX:
            scores[name] = clustering_scores(labels, features.argmax(axis=1))
        else:
            scores[name] = kmeans_scores(
                features, labels, n_clusters, eval_params["kmeans_n_init"], eval_params["kmeans_seed"], device
            )
    return scores


def knn_scores(
    outputs: dict[str, np.ndarray],
    model: Method,
    labels: np.ndarray,
    split: HeldOutSplit,
    knn_params: dict[str, Any],
    device: torch.device,
) -> dict[str, float]:
    """Each stage's weighted kNN accuracy on the test split, the train split as the bank, on
    ``device`` (batched in ``cdrepro.knn``, so memory stays bounded whatever the splits' sizes)."""
    train_labels = torch.from_numpy(labels[split.train]).to(device)  # (n_train,)
    test_labels = torch.from_numpy(labels[split.test]).to(device)  # (n_test,)
    scores = {}
    for name, stage in model.stages().items():
        features = outputs[stage.output]  # (N, d) float32
        bank = torch.from_numpy(features[split.train]).to(device)  # (n_train, d)
        queries = torch.from_numpy(features[split.test]).to(device)  # (n_test, d)
        scores[name] = knn_accuracy(
            bank, train_labels, queries, test_labels, k=knn_params["k"], temperature=knn_params["temperature"]
        )
    return scores


def probe_score(
    features: np.ndarray,
    labels: np.ndarray,
    split: HeldOutSplit,
    linear_params: dict[str, Any],
    seed: int,
    threads: int | None,
) -> tuple[float, dict[str, Any]]:
    """The linear probe's test accuracy on ``features`` (N, d), and how its fit went.

    ``threads``: the job's CPU threads, which also bound BLAS's here (None: its default). lbfgs
    is a chain of small matrix products; OpenBLAS threads beyond the job's cores spin against
    each other: on a loaded 2-core machine digits' probe took 15 s with 2 BLAS threads, 0.5 s with 1."""
    with threadpool_limits(limits=threads, user_api="blas"):
        result = linear_probe(
            features[split.train],
            labels[split.train],
            features[split.test],
            labels[split.test],
            max_iter=linear_params["max_iter"],
            C=linear_params["C"],
            seed=seed,
        )
    if not result.converged:
        log.warning("the linear probe stopped at evaluate.linear.max_iter=%d before converging", result.n_iter)
    fit = {"n_iter": result.n_iter, "converged": result.converged, "train_accuracy": result.train_accuracy}
    return result.test_accuracy, fit


def held_out_scores(
    model: Method,
    outputs: dict[str, np.ndarray],
    labels: np.ndarray,
    split: HeldOutSplit,
    eval_params: dict[str, Any],
    device: torch.device,
    threads: int | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per stage ``{"knn": ...}``, the backbone's also ``{"linear": ...}``; and the record of how
    they were measured (the split, k and T, the probe's settings and fit) for metrics.json.
    The probe's ``random_state`` is ``evaluate.kmeans_seed``, the evaluation's seed (lbfgs draws
    nothing with it)."""
    knn = knn_scores(outputs, model, labels, split, eval_params["knn"], device)
    backbone = outputs[model.stages()[BACKBONE_STAGE].output]
    linear, fit = probe_score(backbone, labels, split, eval_params["linear"], eval_params["kmeans_seed"], threads)
    per_stage = {name: {KNN: accuracy} for name, accuracy in knn.items()}
    per_stage[BACKBONE_STAGE][LINEAR] = linear
    setting = {
        "split": split.summary(),
        KNN: {key: eval_params["knn"][key] for key in ("k", "temperature")},
        LINEAR: {**eval_params["linear"], "features": BACKBONE_STAGE, **fit},
    }
    return per_stage, setting


def evaluate(
    settings: RunSettings,
    prepared: Path,
    model_path: Path,
    split_path: Path,
    eval_params: dict[str, Any],
    threads: int | None = None,
) -> dict[str, Any]:
    """The metrics of a run's own trained model (``model.pt``)."""
    data = load_prepared(prepared)
    model = load_model(model_path, settings, data)
    split = read_split(split_path, data)
    metrics = evaluate_model(model, settings, data, split, eval_params, threads)
    # The identity the tables check the record against (cdrepro.results).
    return metrics | RunIdentity(settings.digest(), data.digest).fields()


def evaluate_model(
    model: Method,
    settings: RunSettings,
    data: PreparedDataset,
    split: HeldOutSplit,
    eval_params: dict[str, Any],
    threads: int | None = None,
) -> dict[str, Any]:
    """The metrics of a loaded model with the run's architecture (a released checkpoint, say):
    one record per stage under ``stages`` (K-means NMI/ARI/ACC over every image, kNN and, for the
    backbone, linear-probe accuracy on the held-out split), the method's last stage named
    ``final_stage``, how the held-out scores were measured under ``held_out``."""
    if threads:
        torch.set_num_threads(threads)
    device = select_device(settings.device)
    outputs = embed(model, data.images, settings.image_size, eval_params["batch_size"], device, settings.precision)
    on = kmeans_device(eval_params["kmeans_backend"], device)
    stages = stage_scores(model, outputs, data.labels, data.num_classes, eval_params, on)
    held_out, setting = held_out_scores(model, outputs, data.labels, split, eval_params, device, threads)
    return {
        "run_id": settings.run_id,
        "dataset": settings.dataset,
        "batch_size": settings.batch_size,
        "method": settings.method,
        "variant": settings.variant,
        "seed": settings.seed,
        "n_images": len(data),
        "num_classes": data.num_classes,
        "training_set": settings.training_set,  # None: trained on every image
        "stages": {name: scores | held_out[name] for name, scores in stages.items()},
        "final_stage": model.final_stage(),
        "held_out": setting,
    }


def pixel_baseline(data: PreparedDataset, eval_params: dict[str, Any]) -> dict[str, Any]:
    """The paper's "K-means" column: K-means on the stored pixels scaled to [0, 1]."""
    pixels = data.images.reshape(len(data), -1).astype(np.float32) / 255.0
    return {
        "dataset": data.name,
        "n_images": len(data),
        "num_classes": data.num_classes,
        "pixels": kmeans_scores(
            pixels, data.labels, data.num_classes, eval_params["kmeans_n_init"], eval_params["kmeans_seed"]
        ),
    }


def pixel_baseline_file(prepared: Path, eval_params: dict[str, Any]) -> dict[str, Any]:
    return pixel_baseline(load_prepared(prepared), eval_params)
