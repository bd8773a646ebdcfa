"""``cdrepro evaluate --checkpoint``: checkpoints in the authors' published layout (and bare state
dicts of ours) give the metrics of the same weights evaluated as our own run; layouts that do not
fit fail with one line naming the keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cdrepro import released
from cdrepro.checkpoint import save_state
from cdrepro.cli import main
from cdrepro.config import load_params
from cdrepro.data.prepared import meta_path_for, save_prepared
from cdrepro.methods import build_method
from cdrepro.methods.cd import ContrastiveDisentangling
from cdrepro.run_settings import find_run, resolve_run
from cdrepro.runs import ProfilePaths, Run, run_id

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = Run("digits", 16, "cd", 0)
RID = run_id(RUN)
N_IMAGES, NUM_CLASSES = 60, 3


@pytest.fixture
def workspace(embedded_params, tmp_path, monkeypatch):
    """A params.yaml with one run at torchvision's width (the authors' models are torchvision
    ResNets), a small prepared 'digits' of random images, and the run's own model.pt."""
    monkeypatch.chdir(tmp_path)
    params = embedded_params
    params["results_dir"] = str(tmp_path / "results")
    params["model"]["backbone_width"] = 64
    params["train"].update(image_size=16, device="cpu")
    params["evaluate"].update(batch_size=32, kmeans_n_init=2, knn={"k": 5})  # a small bank
    params["runs"] = [vars(RUN).copy()]
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    params = load_params("params.yaml")
    paths = ProfilePaths.from_params(params)

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(N_IMAGES, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(N_IMAGES) % NUM_CLASSES
    save_prepared(
        paths.prepared("digits"),
        meta_path_for(paths.prepared("digits")),
        "digits",
        images,
        labels,
        [f"class{i}" for i in range(NUM_CLASSES)],
        {},
    )
    assert main(["split", "--dataset", "digits"]) == 0  # the held-out split evaluation reads

    settings = resolve_run(params, find_run(params, RID))
    torch.manual_seed(0)
    model = build_method(settings, NUM_CLASSES)
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a lost buffer shows
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    save_state(
        paths.model(RID),
        {"settings": settings.to_dict(), "settings_digest": settings.digest(), "model": model.state_dict()},
    )
    return paths, model.state_dict()


def authors_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict renamed to the authors' layout, written out here rather than with the code
    under test: their backbone attribute is ``resnet``, the other two have our names."""
    assert any(key.startswith("backbone.conv1.") for key in state)  # torchvision names below the prefix
    return {
        ("resnet." + key.removeprefix("backbone.") if key.startswith("backbone.") else key): value
        for key, value in state.items()
    }


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdrepro evaluate: error: "), err
    return lines[0]


@pytest.mark.parametrize("wrap", ["bare", "training_checkpoint"])
def test_authors_layout_gives_the_metrics_of_our_own_run(workspace, capsys, wrap):
    paths, state = workspace
    assert cli(capsys, "evaluate", "--run", RID, "--threads", "1")[0] == 0
    ours = json.loads(paths.metrics(RID).read_text())
    ours_bytes = paths.metrics(RID).read_bytes()

    theirs = authors_names(state)
    # Their released files are the bare state dict; their training checkpoints hold it under
    # "state_dict" beside the epoch and optimizer state.
    payload = theirs if wrap == "bare" else {"epoch": 1000, "state_dict": theirs, "best_nmi": 0.5}
    checkpoint = Path("downloads") / "model_epoch_1000.pth"
    checkpoint.parent.mkdir()
    torch.save(payload, checkpoint)

    code, out, _ = cli(capsys, "evaluate", "--run", RID, "--checkpoint", str(checkpoint), "--threads", "1")
    assert code == 0 and "authors layout" in out
    written = released.default_metrics_path(paths, RID, checkpoint)
    assert written == paths.root / "released" / RID / "model_epoch_1000.metrics.json" and written.is_file()
    result = json.loads(written.read_text())
    assert (result["layout"], result["checkpoint"]) == ("authors", str(checkpoint))
    assert result["stages"] == ours["stages"] and list(result["stages"]) == ["backbone", "feature"]
    assert result["n_images"] == ours["n_images"] == N_IMAGES
    assert paths.metrics(RID).read_bytes() == ours_bytes  # the run's own metrics are untouched


def test_a_bare_state_dict_of_ours_and_an_explicit_out(workspace, capsys):
    paths, state = workspace
    assert cli(capsys, "evaluate", "--run", RID, "--threads", "1")[0] == 0
    ours = json.loads(paths.metrics(RID).read_text())
    torch.save(state, "ours.pt")
    code, out, _ = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "ours.pt", "--out", "m.json")
    assert code == 0 and "ours layout" in out
    result = json.loads(Path("m.json").read_text())
    assert result["layout"] == "ours" and result["stages"] == ours["stages"]


def test_missing_and_unexpected_keys_are_named_on_one_line(workspace, capsys):
    _, state = workspace
    theirs = authors_names(state)
    theirs = {k: v for k, v in theirs.items() if not k.startswith("feature_predictor.4.")}  # the last BN
    theirs["resnet.fc.weight"] = torch.zeros(10, 512)  # a classifier our backbone does not have
    torch.save(theirs, "broken.pth")
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "broken.pth")
    line = one_error_line(err)
    assert code == 2 and "authors layout" in line
    assert "missing keys: feature_predictor.4.bias, feature_predictor.4.num_batches_tracked" in line
    assert "unexpected keys: backbone.fc.weight" in line


def test_another_architecture_is_refused_naming_the_shapes(workspace, capsys):
    _, state = workspace
    theirs = authors_names(state)
    theirs["feature_predictor.3.weight"] = torch.zeros(8, theirs["feature_predictor.3.weight"].shape[1])
    torch.save(theirs, "k8.pth")
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "k8.pth")
    line = one_error_line(err)
    assert code == 2 and "feature_predictor.3.weight (8, 512) vs (16, 512)" in line


def test_a_narrow_backbone_run_says_what_the_authors_models_need(workspace, capsys):
    paths, state = workspace
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["backbone_width"] = 16
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    torch.save(authors_names(state), "authors.pth")
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "authors.pth")
    line = one_error_line(err)
    assert code == 2 and "model.backbone_width: 64" in line and "missing keys: backbone.0.weight" in line


def test_a_file_with_code_in_it_is_not_loaded(workspace, capsys):
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(1)}, "hook": Path("x")}, "unsafe.pth")
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "unsafe.pth")
    assert code == 2 and "refused (nothing in it was run)" in one_error_line(err)


def test_not_a_state_dict(workspace, capsys):
    torch.save({"model": {"backbone.conv1.weight": [1, 2]}}, "lists.pth")
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--checkpoint", "lists.pth")
    assert code == 2 and "backbone.conv1.weight are not tensors" in one_error_line(err)


def test_name_mapping_keeps_unknown_prefixes():
    state = {
        "resnet.layer1.0.conv1.weight": torch.zeros(1),
        "instance_projector.0.weight": torch.ones(1),
        "feature_predictor.5.x": torch.ones(2),
        "classifier.weight": torch.ones(3),
    }
    mapped = released.to_our_names(state, ContrastiveDisentangling.authors_layout)
    assert list(mapped) == [
        "backbone.layer1.0.conv1.weight",
        "instance_projector.0.weight",
        "feature_predictor.5.x",
        "classifier.weight",
    ]
    assert released.layout_of(state) == "authors" and released.layout_of(mapped) == "ours"
