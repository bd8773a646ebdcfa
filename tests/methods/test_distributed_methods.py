"""CC, CLD and CDC under DDP: one training step on two gloo processes equals one process at the
same global batch (loss and each term within 1e-6, every parameter gradient as for CD in
tests/test_distributed.py, the same BatchNorm buffers).

What makes them equal is each method's ``gathered``: CC's cluster columns and entropy, CLD's
K-means and CDC's Sinkhorn all run over the batch, so they must see every rank's rows. A method
that forgot one of its outputs there would still train, on per-rank statistics, and fail here.
"""

from __future__ import annotations

import pytest
import torch

# The two-rank harness and the tiny runs (width-4 ResNet-18, 16x16 images, batch 16) of CD's tests.
from test_distributed import assert_one_step_equal, fixed_views, on_two_ranks, one_step
from test_train import params, settings_of  # noqa: F401 (params is a fixture)

from cdrepro import distributed as ddp

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Options away from the defaults where a default would hide a lost factor or a local statistic:
# CLD with 6 groups of the global 16 rows (3 per rank would be a different K-means).
OPTIONS = {
    "cc": {"cluster_temperature": 0.7},
    "cld": {"groups": 6, "group_weight": 0.5},
    "cdc": {"alpha": 0.5, "categorical_weight": 0.5},
}
TERMS = {"cc": {"instance", "cluster", "entropy"}, "cld": {"instance", "group"}, "cdc": {"contrast", "swap"}}


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_two_processes_take_the_step_of_one(params, tmp_path, method):  # noqa: F811 (the fixture)
    params["variants"][method] = {"method": method, **OPTIONS[method]}
    settings = settings_of(params, method)
    single = one_step(ddp.SINGLE, settings, *fixed_views(settings))
    assert_one_step_equal(single, on_two_ranks(tmp_path, one_step, settings, *fixed_views(settings)), TERMS[method])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_on_cuda_two_processes_take_the_step_of_one(params, tmp_path, monkeypatch, method):  # noqa: F811
    """torch's SyncBatchNorm and DDP on CUDA tensors (two ranks sharing GPU 0 over gloo), TF32 off."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    params["variants"][method] = {"method": method, **OPTIONS[method]}
    settings = settings_of(params, method)
    cuda = torch.device("cuda", 0)
    ranks = on_two_ranks(tmp_path, one_step, settings, *fixed_views(settings), cuda, device=cuda)
    single = one_step(ddp.SINGLE, settings, *fixed_views(settings), cuda)
    assert_one_step_equal(single, ranks, TERMS[method])
