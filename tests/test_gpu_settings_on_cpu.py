"""Every method takes real training steps under the settings the GPU runs with (issue 20), as
far as a CPU allows them: bf16 autocast, compiled augmentation, and ``compile: all``.

The quick profile's settings (workflow/configs/quick.yaml: CIFAR stem, its augmentation and
optimiser) shrunk to a width-4 ResNet-18 on 48 random 16x16 images, batch 16: three steps. A
dtype mismatch, a shape or compile error raises out of ``train``; a loss that is not finite
raises ``NonFiniteLoss``; either fails the test here rather than on a GPU machine.

``train.compile`` takes effect on CUDA only (``cdrepro.train.COMPILE_DEVICES``); the tests add
the CPU there. Inductor builds its CPU kernels with the C compiler (gcc): the augmentation takes
~35 s to compile on 2 cores, a method's model 40-200 s. So ``compile: all`` (slow tests) is
checked for every method through TorchDynamo and AOTAutograd with the ``aot_eager`` backend
(graph capture, functionalisation, decompositions, the backward graph: what fails the same on
any device), and through Inductor for CD alone. Inductor's own kernels differ between CPU (C++)
and GPU (Triton) anyway, so no CPU test stands in for them.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cdrepro.train as train_module
from cdrepro.config import validate_params
from cdrepro.data.prepared import meta_path_for, save_prepared
from cdrepro.methods import METHODS
from cdrepro.run_settings import resolve_run
from cdrepro.runs import ProfilePaths, Run
from cdrepro.train import RunFiles, train

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, BATCH, SIZE = 48, 16, 16
# CD's ablations of params.yaml beside the quick profile's six runs: cheap in eager mode.
CD_VARIANTS = ("no_bn", "no_ne_no_bn", "no_sched", "no_head", "single_view")
QUICK_VARIANTS = ("cd", "no_ne", "simclr", "cc", "cld", "cdc")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gpu_params(compile_mode: str) -> dict:
    """quick.yaml as the GPU runs it (bf16, ``compile_mode``), at a CPU test's size."""
    params = yaml.safe_load((REPO / "workflow/configs/quick.yaml").read_text())
    embedded = yaml.safe_load((REPO / "params.yaml").read_text())
    params["variants"].update({name: embedded["variants"][name] for name in CD_VARIANTS})
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=1, image_size=SIZE, device="cpu", precision="bf16", compile=compile_mode)
    return validate_params(params)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_IMAGES, SIZE, SIZE, 3), dtype=np.uint8)
    npz = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_prepared(npz, meta_path_for(npz), "tiny", images, np.arange(N_IMAGES) % 10, [f"c{i}" for i in range(10)], {})
    return npz


def compile_on_cpu(monkeypatch, model_backend: str | None = None) -> Counter:
    """train.compile on the CPU too; counts what torch.compile is asked to compile.
    ``model_backend``: the model's (not the augmentation's) torch.compile backend."""
    monkeypatch.setattr(train_module, "COMPILE_DEVICES", ("cuda", "cpu"))
    calls: Counter = Counter()
    real_compile = torch.compile

    def counting(target, *args, **kwargs):
        name = getattr(target, "__name__", type(target).__name__)
        calls[name] += 1
        if model_backend and name != "apply_params":
            kwargs["backend"] = model_backend
        return real_compile(target, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", counting)
    return calls


@pytest.fixture
def compiled_on_cpu(monkeypatch) -> Counter:
    return compile_on_cpu(monkeypatch)


@pytest.fixture
def traced_on_cpu(monkeypatch) -> Counter:
    """The model through TorchDynamo and AOTAutograd, not Inductor (``aot_eager``)."""
    return compile_on_cpu(monkeypatch, "aot_eager")


@pytest.fixture
def conv_dtypes():
    """The dtypes of every convolution's output while the test runs (eager modules only)."""
    seen: Counter = Counter()

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            seen[output.dtype] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


def train_tiny(params: dict, variant: str, prepared: Path, root: Path) -> list[dict[str, str]]:
    """One epoch (three steps) of ``variant``; its curves.csv rows."""
    settings = resolve_run(params, Run("cifar10", BATCH, variant, 0))
    paths = ProfilePaths(root)
    rid = settings.run_id
    files = RunFiles(paths.checkpoint(rid), paths.model(rid), paths.curves(rid), paths.train_summary(rid))
    train(settings, prepared, files, threads=1, progress=False)
    with open(files.curves, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_finite_terms(rows: list[dict[str, str]], variant: str) -> None:
    assert len(rows) == 1, variant
    terms = {k: float(v) for k, v in rows[0].items() if k not in ("epoch", "lr", "seconds", "pairs_per_s")}
    assert "loss" in terms and len(terms) >= 2, (variant, terms)
    assert all(math.isfinite(v) for v in terms.values()), (variant, terms)


def test_the_quick_profile_names_every_method():
    """The runs below cover every method there is: a new one is tested here without an edit."""
    params = gpu_params("augment")
    assert {params["variants"][v].get("method", "cd") for v in QUICK_VARIANTS} == set(METHODS)


@pytest.mark.parametrize("variant", QUICK_VARIANTS + CD_VARIANTS)
def test_every_method_trains_under_bf16_with_compiled_augmentation(
    variant, prepared, tmp_path, compiled_on_cpu, conv_dtypes
):
    """The quick profile's GPU settings: bf16 autocast and ``compile: augment``. The augmentation
    is compiled once per process (the first case pays ~35 s on 2 cores, the rest reuse it)."""
    rows = train_tiny(gpu_params("augment"), variant, prepared, tmp_path)
    assert_finite_terms(rows, variant)
    assert compiled_on_cpu["apply_params"] == 1, compiled_on_cpu  # the augmentation, not the model
    assert conv_dtypes[torch.bfloat16] > 0 and conv_dtypes[torch.float32] == 0, conv_dtypes


def variant_of(method: str) -> str:
    return next(v for v in QUICK_VARIANTS if gpu_params("all")["variants"][v].get("method", "cd") == method)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_under_bf16_with_the_model_traced(method, prepared, tmp_path, traced_on_cpu):
    """``compile: all`` up to Inductor: TorchDynamo and AOTAutograd trace each method's forward and
    backward (a graph break is allowed; an error is not). 5-10 s a method on 2 cores."""
    rows = train_tiny(gpu_params("all"), variant_of(method), prepared, tmp_path)
    assert_finite_terms(rows, method)
    assert traced_on_cpu["apply_params"] == 1 and sum(traced_on_cpu.values()) == 2, traced_on_cpu


@pytest.mark.slow
def test_cd_trains_under_bf16_with_the_model_compiled_by_inductor(prepared, tmp_path, compiled_on_cpu):
    """``compile: all`` as on the GPU, Inductor included, for CD (60-90 s on 2 cores, cold cache)."""
    rows = train_tiny(gpu_params("all"), "cd", prepared, tmp_path)
    assert_finite_terms(rows, "cd")
    assert compiled_on_cpu["apply_params"] == 1 and sum(compiled_on_cpu.values()) == 2, compiled_on_cpu
