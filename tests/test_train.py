"""Tests of cdrepro.train: outputs, logged loss terms, resume, refusals and the single-view switch.

Every run here is tiny (64 random 16x16 images, a width-4 ResNet-18, batch 16, 1-3 epochs on
one CPU thread) so that the whole file takes seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import cdrepro.train as train_module
from cdrepro import augment as aug
from cdrepro.checkpoint import CheckpointMismatch, load_state, save_state
from cdrepro.config import validate_params
from cdrepro.data.prepared import load_prepared, meta_path_for, save_prepared
from cdrepro.device import DeviceUnavailable
from cdrepro.identity import RunIdentity
from cdrepro.methods import METHODS, build_method
from cdrepro.methods.base import LossTermsError
from cdrepro.methods.cd import ContrastiveDisentangling
from cdrepro.run_settings import RunSettings, resolve_run
from cdrepro.runs import ProfilePaths, Run
from cdrepro.train import NonFiniteLoss, RunFiles, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_IMAGES = 64
BATCH = 16
STEPS_PER_EPOCH = N_IMAGES // BATCH


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def params(embedded_params):
    """The embedded profile shrunk to a few hundred milliseconds per epoch."""
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=2, image_size=16, device="cpu")
    embedded_params["datasets"]["digits"]["crop_min_scale"] = 0.2
    return validate_params(embedded_params)


@pytest.fixture
def prepared(tmp_path) -> Path:
    """64 random 16x16 RGB images in 4 classes, as `cdrepro prepare` would store them."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_IMAGES, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(N_IMAGES) % 4
    npz = tmp_path / "data" / "tiny.npz"
    save_prepared(npz, meta_path_for(npz), "tiny", images, labels, ["a", "b", "c", "d"], {})
    return npz


def settings_of(
    params: dict, variant: str = "cd", batch_size: int = BATCH, seed: int = 0, epochs: int | None = None
) -> RunSettings:
    if epochs is not None:
        params["train"]["epochs"] = epochs
    validate_params(params)
    return resolve_run(params, Run("digits", batch_size, variant, seed))


def run_files(root: Path, settings: RunSettings) -> RunFiles:
    paths = ProfilePaths(root)
    rid = settings.run_id
    return RunFiles(paths.checkpoint(rid), paths.model(rid), paths.curves(rid), paths.train_summary(rid))


def run(settings: RunSettings, prepared: Path, root: Path) -> RunFiles:
    files = run_files(root, settings)
    train(settings, prepared, files, threads=1, progress=False)
    return files


def read_curves(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- outputs


def test_a_short_run_writes_model_curves_summary_and_checkpoint(params, prepared, tmp_path):
    settings = settings_of(params, "cd", epochs=2)
    files = run(settings, prepared, tmp_path / "results")

    for path in (files.model, files.curves, files.summary, files.checkpoint):
        assert path.is_file(), path
    assert not list(files.model.parent.glob(".*.tmp")), "atomic writes left temporary files"

    header, rows = read_curves(files.curves)
    assert header == ["epoch", "lr", "loss", "instance", "feature", "entropy", "seconds", "pairs_per_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        for column in ("lr", "loss", "instance", "feature", "entropy", "seconds", "pairs_per_s"):
            assert math.isfinite(float(row[column])), (column, row)

    data_digest = load_prepared(prepared).digest
    model = load(files.model)
    assert (model["settings_digest"], model["data_digest"]) == (settings.digest(), data_digest)
    assert model["settings"] == settings.to_dict()
    assert model["model"].keys() == build_method(settings, 4).state_dict().keys()

    summary = json.loads(files.summary.read_text())
    assert summary["run_id"] == settings.run_id
    assert (summary["settings_digest"], summary["data_digest"]) == (settings.digest(), data_digest)
    assert summary["epochs"] == 2
    assert summary["n_images"] == N_IMAGES
    assert summary["steps_per_epoch"] == STEPS_PER_EPOCH
    assert summary["final"]["epoch"] == 2
    assert math.isclose(summary["final"]["loss"], float(rows[-1]["loss"]), rel_tol=1e-9)

    checkpoint = load(files.checkpoint)  # weights_only=True: no pickled code in the file
    assert checkpoint["epoch"] == 2
    assert (checkpoint["settings_digest"], checkpoint["data_digest"]) == (settings.digest(), data_digest)
    assert len(checkpoint["history"]) == 2
    for name, tensor in model["model"].items():
        assert torch.equal(tensor, checkpoint["model"][name]), name


@pytest.mark.parametrize("variant", ["cd", "no_ne", "no_head", "no_sched"])
def test_curves_log_the_terms_and_lr_the_switches_ask_for(params, prepared, tmp_path, variant):
    params["methods"]["cd"]["entropy_weight"] = 0.5  # a weight other than 1, so a dropped factor shows
    settings = settings_of(params, variant, epochs=3)
    o = settings.options
    header, rows = read_curves(run(settings, prepared, tmp_path).curves)
    assert len(rows) == 3
    assert ("feature" in header and "entropy" in header) == o["head"]

    for row in rows:
        instance, loss = float(row["instance"]), float(row["loss"])
        if not o["head"]:
            expected = instance
        else:
            feature, entropy = float(row["feature"]), float(row["entropy"])
            assert 0.0 <= entropy <= 1.0
            expected = instance + feature - (o["entropy_weight"] * entropy if o["entropy"] else 0.0)
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-5), row

    lrs = [float(r["lr"]) for r in rows]
    if settings.schedule:
        # CosineAnnealingLR(T_max=epochs), stepped per epoch; the lr used in epoch e (1-based).
        expected_lrs = [settings.lr * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    else:
        expected_lrs = [settings.lr] * 3
    assert lrs == pytest.approx(expected_lrs, rel=1e-9)


# --------------------------------------------------------------------------- resume


class Interrupted(Exception):
    """Stands in for a killed job."""


def watch_checkpoints(monkeypatch: pytest.MonkeyPatch, die_after: int | None = None) -> list[int]:
    """Record the epoch of every checkpoint train() saves; with ``die_after``, raise right after
    that many have been written (the file is complete, as after a kill between two epochs)."""
    real_save = train_module.save_state
    saved: list[int] = []

    def save_then_maybe_die(path, state):
        real_save(path, state)
        if "epoch" not in state:  # the final model.pt, not a checkpoint
            return
        saved.append(state["epoch"])
        if len(saved) == die_after:
            raise Interrupted(f"killed after epoch {state['epoch']}")

    monkeypatch.setattr(train_module, "save_state", save_then_maybe_die)
    return saved


@pytest.mark.parametrize("variant", ["cd", "no_sched"])
def test_resume_after_an_interruption_is_bit_identical(params, prepared, tmp_path, monkeypatch, variant):
    settings = settings_of(params, variant, epochs=3)
    straight = run(settings, prepared, tmp_path / "straight")

    with monkeypatch.context() as patch:
        watch_checkpoints(patch, die_after=1)
        with pytest.raises(Interrupted):
            run(settings, prepared, tmp_path / "resumed")
    files = run_files(tmp_path / "resumed", settings)
    assert load(files.checkpoint)["epoch"] == 1 and not files.model.exists()

    saved = watch_checkpoints(monkeypatch)
    run(settings, prepared, tmp_path / "resumed")
    # Two epochs left, so restored optimizer *and* scheduler state both shape what follows.
    assert saved == [2, 3], "the second call must continue after epoch 1, not train from scratch"

    expected, got = load(straight.model)["model"], load(files.model)["model"]
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resume"

    timing = {"seconds", "pairs_per_s"}
    _, straight_rows = read_curves(straight.curves)
    _, resumed_rows = read_curves(files.curves)
    assert len(resumed_rows) == 3
    for a, b in zip(straight_rows, resumed_rows, strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def test_a_finished_run_called_again_trains_nothing(params, prepared, tmp_path, monkeypatch):
    settings = settings_of(params, "cd", epochs=1)
    files = run(settings, prepared, tmp_path)
    weights = load(files.model)["model"]
    saved = watch_checkpoints(monkeypatch)
    run(settings, prepared, tmp_path)
    assert saved == []
    again = load(files.model)["model"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_a_checkpoint_of_other_settings_is_refused(params, prepared, tmp_path):
    settings = settings_of(params, "cd", epochs=1)
    files = run(settings, prepared, tmp_path)
    before = files.checkpoint.read_bytes()
    data = load_prepared(prepared).digest
    for other in (RunIdentity("0" * 16, data), RunIdentity(settings.digest(), "0" * 16)):
        with pytest.raises(CheckpointMismatch, match=r"(?i)other (settings|data).*delete"):
            load_state(files.checkpoint, other)
    assert files.checkpoint.read_bytes() == before, "the refused checkpoint must be left alone"


def test_training_with_other_settings_sets_the_old_checkpoint_aside(params, prepared, tmp_path, monkeypatch):
    settings = settings_of(params, "cd", epochs=1)
    files = run(settings, prepared, tmp_path)
    before = files.checkpoint.read_bytes()

    params["train"]["lr"] = 1e-3  # same run id, other settings: the workflow re-runs it
    other = settings_of(params, "cd", epochs=1)
    assert other.run_id == settings.run_id and other.digest() != settings.digest()
    saved = watch_checkpoints(monkeypatch)
    train(other, prepared, run_files(tmp_path, other), threads=1, progress=False)
    assert saved, "training must start from scratch, not resume the other settings' state"
    aside = files.checkpoint.with_name(f"checkpoint.pt.{settings.digest()}-{load_prepared(prepared).digest}.aside")
    assert aside.read_bytes() == before, "the old state is kept, untouched, under another name"
    assert load(files.checkpoint)["settings_digest"] == other.digest()


def prepare_tiny(path: Path, n_images: int = N_IMAGES, seed: int = 0) -> Path:
    """Random 16x16 images in 4 classes at ``path``: another dataset under the same name."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, 16, 16, 3), dtype=np.uint8)
    save_prepared(path, meta_path_for(path), "tiny", images, np.arange(n_images) % 4, ["a", "b", "c", "d"], {})
    return path


def test_a_changed_dataset_trains_afresh_under_the_same_run_id(params, prepared, tmp_path, monkeypatch):
    """The data are part of a run's identity: other images under the same dataset name (here
    more of them, as with a higher images_per_class) are a new training from epoch 0."""
    settings = settings_of(params, "cd", epochs=1)
    files = run(settings, prepared, tmp_path)
    old_model = files.model.read_bytes()
    prepare_tiny(prepared, n_images=N_IMAGES + 16, seed=1)
    saved = watch_checkpoints(monkeypatch)
    train(settings, prepared, files, threads=1, progress=False)
    assert saved == [1], "the old data's finished checkpoint must not be resumed"
    assert files.model.read_bytes() != old_model
    assert json.loads(files.summary.read_text())["data_digest"] == load_prepared(prepared).digest
    assert len(list(files.checkpoint.parent.glob("checkpoint.pt.*.aside"))) == 1  # the old one, kept


def test_params_switched_back_resume_the_finished_checkpoint_set_aside(params, prepared, tmp_path, monkeypatch, caplog):
    """Params A, then B, then A again: the third run takes A's finished checkpoint back and
    trains no step; its model is A's, to the byte."""
    a = settings_of(params, "cd", epochs=1)
    files = run(a, prepared, tmp_path)
    model_a = files.model.read_bytes()
    params["train"]["lr"] = 1e-3
    run(settings_of(params, "cd", epochs=1), prepared, tmp_path)
    saved = watch_checkpoints(monkeypatch)
    with caplog.at_level("INFO", logger="cdrepro"):
        train(a, prepared, files, threads=1, progress=False)
    assert saved == [], "A's finished work must be resumed, not trained again"
    assert files.model.read_bytes() == model_a
    assert "taking back the checkpoint set aside as checkpoint.pt." in caplog.text
    assert [p.name.split(".")[2] for p in files.checkpoint.parent.glob("*.aside")] == [
        RunIdentity(settings_of(params, "cd", epochs=1).digest(), load_prepared(prepared).digest).key
    ]


def test_a_checkpoint_set_aside_is_never_replaced_by_a_lesser_one(tmp_path):
    """Two checkpoints of one identity: the one further along is kept (an interrupted rerun of
    params B must not overwrite B's finished checkpoint)."""
    from cdrepro.checkpoint import aside_path, resume_or_set_aside

    b, a = RunIdentity("b" * 16, "d" * 16), RunIdentity("a" * 16, "d" * 16)
    path = tmp_path / "checkpoint.pt"
    save_state(aside_path(path, b), {**b.fields(), "epoch": 5})
    save_state(path, {**b.fields(), "epoch": 1})
    assert resume_or_set_aside(path, a) is None
    assert load(aside_path(path, b))["epoch"] == 5 and not path.exists()
    assert resume_or_set_aside(path, b)["epoch"] == 5 and load(path)["epoch"] == 5


def test_a_checkpoint_from_before_data_digests_still_resumes(params, prepared, tmp_path, monkeypatch, caplog):
    """A one-time migration: a checkpoint that records only its settings digest (cdrepro before
    data digests) of these settings is resumed, with a warning, as of the current data."""
    settings = settings_of(params, "cd", epochs=1)
    files = run(settings, prepared, tmp_path)
    state = load(files.checkpoint)
    del state["data_digest"]
    save_state(files.checkpoint, state)
    saved = watch_checkpoints(monkeypatch)
    with caplog.at_level("WARNING", logger="cdrepro"):
        train(settings, prepared, files, threads=1, progress=False)
    assert saved == [] and "predates data digests" in caplog.text


def test_saving_the_same_state_gives_the_same_bytes(tmp_path):
    state = {"settings_digest": "x", "model": {"w": torch.arange(6.0)}}
    save_state(tmp_path / "a.pt", state)
    save_state(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_device_and_precision_do_not_invalidate_a_checkpoint(params, prepared, tmp_path):
    settings = settings_of(params, "cd", epochs=1)
    run(settings, prepared, tmp_path)
    params["train"].update(device="auto" if not torch.cuda.is_available() else "cpu", precision="fp32")
    same = settings_of(params, "cd", epochs=1)
    assert same.digest() == settings.digest()
    run(same, prepared, tmp_path)  # resumes (nothing left to train) instead of refusing


# --------------------------------------------------------------------------- refusals


def register_faulty_cd(monkeypatch: pytest.MonkeyPatch, params: dict, nan_after_steps: int) -> None:
    """A method ``faulty_cd`` (CD whose loss turns NaN after ``nan_after_steps`` steps) and a
    variant of it, ``faulty``: a fault injected through the method seam."""

    class FaultyCD(ContrastiveDisentangling):
        name = "faulty_cd"
        steps = 0

        def loss(self, out1, out2):
            terms = super().loss(out1, out2)
            FaultyCD.steps += 1
            if FaultyCD.steps > nan_after_steps:
                terms["loss"] = terms["loss"] * float("nan")
            return terms

    monkeypatch.setitem(METHODS, "faulty_cd", FaultyCD)
    params["variants"]["faulty"] = dict(params["variants"]["cd"], method="faulty_cd")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(params, prepared, tmp_path, monkeypatch):
    register_faulty_cd(monkeypatch, params, nan_after_steps=STEPS_PER_EPOCH)
    settings = settings_of(params, "faulty", epochs=3)
    files = run_files(tmp_path, settings)
    with pytest.raises(NonFiniteLoss, match=r"epoch 2") as info:
        train(settings, prepared, files, threads=1, progress=False)
    assert str(files.checkpoint) in str(info.value)

    checkpoint = load(files.checkpoint)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    _, rows = read_curves(files.curves)
    assert [r["epoch"] for r in rows] == ["1"]
    assert not files.model.exists()


def test_non_finite_loss_in_the_first_epoch_claims_no_checkpoint(params, prepared, tmp_path, monkeypatch):
    register_faulty_cd(monkeypatch, params, nan_after_steps=0)
    settings = settings_of(params, "faulty", epochs=2)
    files = run_files(tmp_path, settings)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1\b") as info:
        train(settings, prepared, files, threads=1, progress=False)
    assert "epoch 0" not in str(info.value) and "No checkpoint" in str(info.value)
    assert not files.checkpoint.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda terms: terms.pop("feature"), r"declares but does not return \['feature'\]"),
        (lambda terms: terms.update(extra=terms["loss"] * 0), r"returns but does not declare \['extra'\]"),
    ],
)
def test_a_loss_term_declared_and_not_returned_or_the_reverse_is_an_error(
    params, prepared, tmp_path, monkeypatch, change, message
):
    """Never a silent drop: a term without a curve column, or a column without a term."""

    class Mislabelled(ContrastiveDisentangling):
        name = "mislabelled"

        def loss(self, out1, out2):
            terms = super().loss(out1, out2)
            change(terms)
            return terms

    monkeypatch.setitem(METHODS, "mislabelled", Mislabelled)
    params["variants"]["mislabelled"] = dict(params["variants"]["cd"], method="mislabelled")
    settings = settings_of(params, "mislabelled", epochs=1)
    files = run_files(tmp_path, settings)
    with pytest.raises(LossTermsError, match=message):
        train(settings, prepared, files, threads=1, progress=False)
    assert not files.checkpoint.exists() and not files.curves.exists()


def test_batch_size_larger_than_the_dataset_is_refused(params, prepared, tmp_path):
    settings = settings_of(params, "cd", batch_size=128, epochs=1)
    files = run_files(tmp_path, settings)
    with pytest.raises(ValueError, match=r"128") as info:
        train(settings, prepared, files, threads=1, progress=False)
    assert str(N_IMAGES) in str(info.value)
    assert not files.checkpoint.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_fallback(params, prepared, tmp_path):
    params["train"]["device"] = "cuda"
    settings = settings_of(params, "cd", epochs=1)
    with pytest.raises(DeviceUnavailable, match="cuda"):
        train(settings, prepared, run_files(tmp_path, settings), threads=1, progress=False)


# --------------------------------------------------------------------------- views


@pytest.mark.parametrize(("variant", "augment_calls", "eval_calls"), [("cd", 2, 0), ("single_view", 1, 1)])
def test_single_view_makes_view_1_with_the_evaluation_transform(
    params, prepared, tmp_path, monkeypatch, variant, augment_calls, eval_calls
):
    settings = settings_of(params, variant, epochs=1)
    assert settings.views == (1 if variant == "single_view" else 2)
    counts = {"augment": 0, "eval_transform": 0}
    # Every augmented view draws its parameters once (cdrepro.augment.view_maker).
    real_augment, real_eval = aug.sample_params, aug.eval_transform

    def counting_augment(*args, **kwargs):
        counts["augment"] += 1
        return real_augment(*args, **kwargs)

    def counting_eval(*args, **kwargs):
        counts["eval_transform"] += 1
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(aug, "sample_params", counting_augment)
    monkeypatch.setattr(aug, "eval_transform", counting_eval)
    run(settings, prepared, tmp_path)
    assert counts == {"augment": augment_calls * STEPS_PER_EPOCH, "eval_transform": eval_calls * STEPS_PER_EPOCH}


# --------------------------------------------------------------------------- the training set


def test_a_long_tailed_run_trains_on_exactly_its_counts_and_never_on_a_test_image(params, tmp_path, monkeypatch):
    """train_on: train with a long tail: 4 classes of 16 train images (official split, train
    first) at ratio 4 keep 16, 10, 6 and 4; the 16 test images (all white) never reach a batch."""
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 128, size=(64, 16, 16, 3), dtype=np.uint8)
    test_images = np.full((16, 16, 16, 3), 255, np.uint8)
    labels = np.concatenate([np.arange(64) % 4, np.arange(16) % 4])
    npz = tmp_path / "data" / "tiny.npz"
    images = np.concatenate([train_images, test_images])
    save_prepared(npz, meta_path_for(npz), "tiny", images, labels, list("abcd"), {"splits": {"train": 64, "test": 16}})
    spec = {"split": "official", "long_tail": {"imbalance_ratio": 4.0, "seed": 0}}
    settings = dataclasses.replace(settings_of(params, "cd", batch_size=8, epochs=2), training_set=spec)

    seen: list[torch.Tensor] = []
    real = train_module.make_views
    monkeypatch.setattr(train_module, "make_views", lambda x, *rest: seen.append(x) or real(x, *rest))
    files = run(settings, npz, tmp_path / "results")

    summary = json.loads(files.summary.read_text())
    assert summary["class_counts"] == [16, 10, 6, 4] and summary["n_images"] == 36
    assert summary["steps_per_epoch"] == 36 // 8 and len(seen) == 2 * (36 // 8)
    batches = torch.cat(seen)  # (steps x 8, 3, 16, 16) in [0, 1]
    assert batches.amax(dim=(1, 2, 3)).max() < 0.51  # every image a train image (values < 128)
    assert load(files.model)["settings"]["training_set"] == spec  # in the settings, so in the digest
    assert settings.digest() != settings_of(params, "cd", batch_size=8, epochs=2).digest()
