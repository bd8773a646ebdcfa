"""``bash bench/gpu_session.sh pack`` (issue 23) checked without a GPU: end to end on the CPU at a
tiny size, both sizes, packing factors 1 and 2, so that its shell, its files and its table are
known to work before a GPU window opens; and its table on hand-made rates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import packing_session  # noqa: E402  (bench/ is not a package)
from gpu_session import run_gpu_session  # noqa: E402

METHODS = ["cd", "simclr", "cc", "cld", "cdc"]
TINY = (
    "--batch-size 16 --set model.backbone_width=4 --set train.image_size=16 --set train.cpu_threads=1 "
    "--packs 1,2 --seconds 0.2 --warmup 1 --threads 1"
)


@pytest.mark.slow
def test_the_pack_session_times_every_method_alone_and_packed_at_both_sizes(tmp_path):
    proc, tarball, files = run_gpu_session("pack", tmp_path, PACK_S="300", PACK_ARGS=TINY)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in tarball.parent.iterdir()) == ["session-pack.tar.gz"]

    for size, config in packing_session.SIZES.items():
        rates = json.loads((files / f"packing-{size}.json").read_text())
        assert list(rates["methods"]) == METHODS, size  # one run a method, in the registry's order
        assert set(rates["total_pairs_per_s"]) == {"1", "2"} and all(v > 0 for v in rates["total_pairs_per_s"].values())
        for rid in rates["methods"].values():
            assert rates["packs"]["1"][rid]["processes"] == 1 and rates["packs"]["2"][rid]["processes"] == 2
        # The runs are the profile's own: model and augmentation as in its config, but for the test's --set.
        used = yaml.safe_load((files / f"packing-{size}.yaml").read_text())
        profile = yaml.safe_load(config.read_text())
        assert used["datasets"] == profile["datasets"] and used["variants"] == profile["variants"]
        assert used["model"] == {**profile["model"], "backbone_width": 4}
    table = (files / "packing.md").read_text()
    assert "### quick" in table and "### paper" in table and "bench/packing_session.py" in table
    assert table.count("| cd |") == 2 and "not timed" not in table


def test_the_table_gives_each_packing_factor_its_gain_over_alone_and_says_what_was_not_timed():
    def result(processes: int, total: float) -> dict:
        return {"processes": processes, "total_pairs_per_s": total, "peak_allocated_gib_per_process": 2.5}

    rates = {
        "packs": {
            "1": {"a-cd": result(1, 1000.0), "a-cc": result(1, 800.0)},
            "2": {"a-cd": result(2, 1500.0), "a-cc": result(1, 700.0)},  # one process never got there
        }
    }
    lines = packing_session.table("quick", rates, {"cd": "a-cd", "cc": "a-cc"})
    assert lines[0] == "### quick"
    assert "| cd | a-cd | 1,000 (x1.00), 2.5 | 1,500 (x1.50), 2.5 |" in lines
    assert "| cc | a-cc | 800 (x1.00), 2.5 | not timed |" in lines
