"""Tests of cdrepro.evaluate: embedding every image, the metrics record, K-means scoring, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cdrepro.config import validate_params
from cdrepro.data.heldout import SplitError, make_split, write_split
from cdrepro.data.prepared import load_prepared, meta_path_for, save_prepared
from cdrepro.device import DeviceUnavailable
from cdrepro.evaluate import embed, evaluate, kmeans_scores, load_model, pixel_baseline
from cdrepro.methods import build_method
from cdrepro.run_settings import RunSettings, resolve_run
from cdrepro.runs import ProfilePaths, Run
from cdrepro.train import RunFiles, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_IMAGES = 70  # not a multiple of EVAL_BATCH: the last batch is partial
EVAL_BATCH = 32
NUM_CLASSES = 4
HIDDEN_DIM = 12  # differs from K (= the batch size, 16) so the two final widths can be told apart


@pytest.fixture
def params(embedded_params):
    embedded_params["model"].update(backbone_width=4, hidden_dim=HIDDEN_DIM)
    embedded_params["train"].update(epochs=1, image_size=16, device="cpu")
    embedded_params["evaluate"].update(batch_size=EVAL_BATCH, kmeans_n_init=2, knn={"k": KNN_K})
    return validate_params(embedded_params)


KNN_K = 5  # the tiny dataset's train split holds 56 images


def settings_of(params: dict, variant: str = "cd") -> RunSettings:
    validate_params(params)
    return resolve_run(params, Run("digits", 16, variant, 0))


def write_prepared(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    names = [f"class{i}" for i in range(int(labels.max()) + 1)]
    save_prepared(path, meta_path_for(path), path.stem, images, labels, names, {})
    return path


@pytest.fixture
def prepared(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(N_IMAGES, 12, 12, 3), dtype=np.uint8)
    return write_prepared(tmp_path / "data" / "tiny.npz", images, np.arange(N_IMAGES) % NUM_CLASSES)


def split_of(prepared: Path, params: dict) -> Path:
    """The prepared dataset's held-out split file (what ``cdrepro split`` writes)."""
    path = prepared.with_suffix(".split.json")
    write_split(path, make_split(load_prepared(prepared), params["evaluate"]["split"], KNN_K))
    return path


def trained_model(settings: RunSettings, prepared: Path, root: Path) -> Path:
    """Train one epoch and return the run's model.pt."""
    paths = ProfilePaths(root)
    rid = settings.run_id
    files = RunFiles(paths.checkpoint(rid), paths.model(rid), paths.curves(rid), paths.train_summary(rid))
    train(settings, prepared, files, threads=1, progress=False)
    return files.model


# --------------------------------------------------------------------------- embed


@pytest.mark.parametrize("variant", ["cd", "no_head"])
def test_embed_returns_every_image_at_both_stages(params, prepared, variant):
    settings = settings_of(params, variant)
    torch.manual_seed(0)
    model = build_method(settings, NUM_CLASSES)
    images = load_prepared(prepared).images
    head = settings.options["head"]

    outputs = embed(model, images, settings.image_size, EVAL_BATCH, torch.device("cpu"), settings.precision)
    assert list(outputs) == (["h", "f"] if head else ["h", "z"])  # what the stages read
    h, final = outputs.values()
    assert h.shape == (N_IMAGES, settings.rep_dim)
    assert final.shape == (N_IMAGES, settings.options["feature_num"] if head else settings.hidden_dim)
    assert h.dtype == final.dtype == np.float32
    assert np.isfinite(h).all() and np.isfinite(final).all()
    if head:
        assert ((final >= 0) & (final <= 1)).all()  # sigmoid outputs

    # Evaluation mode: an image's embedding does not depend on the batch it is in.
    h_one, final_one = embed(
        model, images, settings.image_size, N_IMAGES, torch.device("cpu"), settings.precision
    ).values()
    np.testing.assert_allclose(h, h_one, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final, final_one, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize(("variant", "stage"), [("cd", "feature"), ("no_head", "projector")])
def test_evaluate_returns_the_metrics_record(params, prepared, tmp_path, variant, stage):
    settings = settings_of(params, variant)
    model_path = trained_model(settings, prepared, tmp_path)

    metrics = evaluate(settings, prepared, model_path, split_of(prepared, params), params["evaluate"], threads=1)
    assert set(metrics) == {
        "run_id",
        "dataset",
        "batch_size",
        "method",
        "variant",
        "seed",
        "n_images",
        "num_classes",
        "training_set",
        "stages",
        "final_stage",
        "held_out",
        "settings_digest",
        "data_digest",
    }
    # The identity of the model it scored, which the tables check (cdrepro.results).
    assert (metrics["settings_digest"], metrics["data_digest"]) == (settings.digest(), load_prepared(prepared).digest)
    assert metrics["run_id"] == settings.run_id and metrics["training_set"] is None  # every image
    assert (metrics["dataset"], metrics["batch_size"], metrics["method"], metrics["variant"], metrics["seed"]) == (
        "digits",
        16,
        "cd",
        variant,
        0,
    )
    assert metrics["n_images"] == N_IMAGES  # every image, the last partial batch included
    assert metrics["num_classes"] == NUM_CLASSES
    assert list(metrics["stages"]) == ["backbone", stage] and metrics["final_stage"] == stage
    for name, scores in metrics["stages"].items():
        assert set(scores) == {"nmi", "ari", "acc", "knn"} | ({"linear"} if name == "backbone" else set())
        assert 0.0 <= scores["nmi"] <= 1.0 and -1.0 <= scores["ari"] <= 1.0
        assert 0.0 <= scores["knn"] <= 1.0
        assert 1.0 / NUM_CLASSES - 1e-9 <= scores["acc"] <= 1.0  # a one-to-one map gets a class's share
    assert 0.0 <= metrics["stages"]["backbone"]["linear"] <= 1.0
    # How the held-out scores were measured: the digits-like tiny set has no official split.
    held_out = metrics["held_out"]
    assert held_out["split"] == {
        "dataset": "tiny",
        "kind": "stratified",
        "test_fraction": 0.2,
        "seed": 42,
        "n_train": 56,
        "n_test": 14,
    }
    assert held_out["knn"] == {"k": KNN_K, "temperature": 0.07}
    assert held_out["linear"]["C"] == 1.0 and held_out["linear"]["features"] == "backbone"
    assert json.loads(json.dumps(metrics)) == metrics  # plain JSON, as metrics.json stores it


def test_evaluate_refuses_a_split_of_other_data(params, prepared, tmp_path):
    settings = settings_of(params, "cd")
    model_path = trained_model(settings, prepared, tmp_path)
    split = split_of(prepared, params)
    record = json.loads(split.read_text())
    split.write_text(json.dumps(record | {"data_digest": "0" * 16}))
    with pytest.raises(SplitError, match=r"drawn from other data than tiny has now; re-run `cdrepro split"):
        evaluate(settings, prepared, model_path, split, params["evaluate"], threads=1)


def test_evaluate_refuses_a_model_trained_with_other_settings(params, prepared, tmp_path):
    settings = settings_of(params, "cd")
    model_path = trained_model(settings, prepared, tmp_path)
    assert load_model(model_path, settings, load_prepared(prepared)) is not None

    params["train"]["lr"] = 1e-3
    changed = settings_of(params, "cd")
    with pytest.raises(RuntimeError, match="other settings"):
        evaluate(changed, prepared, model_path, split_of(prepared, params), params["evaluate"], threads=1)


def test_evaluate_refuses_a_model_trained_on_other_data(params, prepared, tmp_path):
    settings = settings_of(params, "cd")
    model_path = trained_model(settings, prepared, tmp_path)
    data = load_prepared(prepared)
    write_prepared(prepared, data.images[::-1].copy(), data.labels[::-1].copy())  # same name, other order
    with pytest.raises(RuntimeError, match=f"other data .*{settings.run_id}.*cdrepro train --run"):
        evaluate(settings, prepared, model_path, split_of(prepared, params), params["evaluate"], threads=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_evaluate_on_cuda_without_a_gpu_is_an_error(params, prepared, tmp_path):
    model_path = trained_model(settings_of(params, "cd"), prepared, tmp_path)
    params["train"]["device"] = "cuda"
    with pytest.raises(DeviceUnavailable):
        evaluate(
            settings_of(params, "cd"), prepared, model_path, split_of(prepared, params), params["evaluate"], threads=1
        )


# --------------------------------------------------------------------------- scoring


def test_kmeans_scores_are_perfect_on_well_separated_blobs():
    rng = np.random.default_rng(2)
    centres = np.eye(3, 5) * 100.0
    labels = np.repeat(np.arange(3), 20)
    features = (centres[labels] + rng.normal(scale=0.1, size=(60, 5))).astype(np.float32)
    order = rng.permutation(60)
    scores = kmeans_scores(features[order], labels[order], n_clusters=3, n_init=1, seed=0)
    assert scores == pytest.approx({"nmi": 1.0, "ari": 1.0, "acc": 1.0})


def test_kmeans_scores_of_unrelated_labels_are_low():
    rng = np.random.default_rng(3)
    centres = np.eye(3, 5) * 100.0
    clusters = np.repeat(np.arange(3), 30)
    features = centres[clusters] + rng.normal(scale=0.1, size=(90, 5))
    labels = np.tile(np.arange(3), 30)  # every blob holds every class equally
    scores = kmeans_scores(features, labels, n_clusters=3, n_init=1, seed=0)
    assert scores["nmi"] < 0.05 and scores["ari"] < 0.05 and scores["acc"] < 0.4


def test_pixel_baseline_separates_classes_of_constant_colour(tmp_path):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]], dtype=np.uint8)
    labels = np.tile(np.arange(4), 9)
    images = np.broadcast_to(colours[labels][:, None, None, :], (36, 8, 8, 3)).copy()
    data = load_prepared(write_prepared(tmp_path / "colours.npz", images, labels))

    result = pixel_baseline(data, {"batch_size": 8, "kmeans_n_init": 1, "kmeans_seed": 0})
    assert result["dataset"] == "colours"
    assert result["n_images"] == 36 and result["num_classes"] == 4
    assert result["pixels"] == pytest.approx({"nmi": 1.0, "ari": 1.0, "acc": 1.0})
