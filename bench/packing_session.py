"""Each method's training rate on one GPU, alone and packed with copies of itself (issue 23):
``bash bench/gpu_session.sh pack``, one command of at most 9 minutes on a lent GPU.

For each size, one run of every method, the first of the profile's ``compare_methods`` runs that
uses it (so the runs, models and augmentations are the profile's own, not copies):
  quick   workflow/configs/quick.yaml: CIFAR-10, ResNet-18, 32 px, batch 256
  paper   workflow/configs/paper.yaml: STL-10, ResNet-34, 224 px, batch 128
bench/packing_probe.py times each run's real step (on random images of the run's size) in 1, 2,
3 and 4 processes at once (``--packs``). What it tells: the total pairs/s at p processes over the
rate alone is what ``gpus.runs_per_gpu: p`` gains on that GPU (docs/cluster.md, "One machine");
below p, more jobs a GPU only share it.

Writes, in --out: ``packing-<size>.json`` (every process's rates, memory, what bounds the step)
and ``packing.md`` (a table per size, the one docs/performance.md quotes, with this command).
Each size has a deadline (--max-s split evenly), so a slow machine gets fewer packing factors,
not an overrun. On the CPU at tiny size (``--device cpu --set ...``) it is the test of the script.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import quick_params  # noqa: E402  (bench/ is not a package)
import quick_session  # noqa: E402

from cdrepro import config as cfg  # noqa: E402
from cdrepro import run_settings as rs  # noqa: E402
from cdrepro.runs import run_id, run_of  # noqa: E402

SIZES = {"quick": REPO / "workflow/configs/quick.yaml", "paper": REPO / "workflow/configs/paper.yaml"}
TARGET = "compare_methods"


def method_runs(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The params (validated) and, per method, the run id of its first ``compare_methods`` run."""
    params = cfg.validate_params(copy.deepcopy(raw))
    chosen: dict[str, str] = {}
    for run in rs.runs_of(params, TARGET):
        chosen.setdefault(rs.resolve_run(params, run).method, run_id(run))
    return params, chosen


def write_params(size: str, args: argparse.Namespace, folder: Path) -> tuple[Path, dict[str, str]]:
    """The size's profile with train.device, results_dir and the CPU test's ``--set`` applied,
    its runs cut to one a method; its path and {method: run id}."""
    raw = yaml.safe_load(SIZES[size].read_text())
    raw["train"]["device"] = args.device
    raw["results_dir"] = str(folder / "results")
    for assignment in args.set:
        quick_params.set_dotted(raw, assignment)
    _, chosen = method_runs(raw)
    keep = set(chosen.values())
    raw["runs"] = [run for run in raw["runs"] if run_id(run_of(run)) in keep]
    if args.batch_size:  # after the cut: one run a method cannot collide at one batch size
        for run in raw["runs"]:
            run["batch_size"] = args.batch_size
        _, chosen = method_runs(raw)
    path = folder / f"packing-{size}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, chosen


def table(size: str, rates: dict[str, Any], chosen: dict[str, str]) -> list[str]:
    """One markdown table: per method, pairs/s alone, and at each p the total pairs/s with its
    gain over alone and the peak memory a process used."""
    packs = sorted(rates["packs"], key=int)
    header = ["method", "run", *[f"p={p}: total pairs/s (x alone), GiB/process" for p in packs]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, rid in chosen.items():
        alone = rates["packs"].get("1", {}).get(rid, {}).get("total_pairs_per_s")
        cells = []
        for p in packs:
            result = rates["packs"][p].get(rid)
            if not result or result["processes"] != int(p):
                cells.append("not timed")
                continue
            gain = f" (x{result['total_pairs_per_s'] / alone:.2f})" if alone else ""
            memory = result.get("peak_allocated_gib_per_process")
            cells.append(f"{result['total_pairs_per_s']:,.0f}{gain}, " + ("–" if memory is None else f"{memory:.1f}"))
        lines.append(f"| {method} | {rid} | " + " | ".join(cells) + " |")
    return [f"### {size}", "", *lines, ""]


def measure(size: str, args: argparse.Namespace, deadline: float) -> list[str]:
    out = Path(args.out)
    params_path, chosen = write_params(size, args, out)
    started = time.time()
    rates = quick_session.run_probe(
        params_path,
        list(chosen.values()),
        args.packs,
        out,
        out,
        seconds=args.seconds,
        warmup=args.warmup,
        threads=args.threads,
        deadline=deadline,
        name=f"packing-{size}",
    )
    rates.update(size=size, methods=chosen, wall_s=round(time.time() - started, 1))
    (out / f"packing-{size}.json").write_text(json.dumps(rates, indent=2) + "\n")
    print(f"{size}: exit {rates['statuses']} in {rates['wall_s']} s; total pairs/s {rates['total_pairs_per_s']}")
    return table(size, rates, chosen)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="where the params, JSON and packing.md go")
    p.add_argument("--sizes", default="quick,paper", help="comma-separated, of: " + ", ".join(SIZES))
    p.add_argument("--packs", default="1,2,3,4", help="packing factors, comma-separated")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run and packing factor")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing")
    p.add_argument("--max-s", type=float, default=480.0, help="all sizes end by then (from the start)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of every process")
    p.add_argument("--batch-size", type=int, default=None, help="every run's (CPU test only)")
    p.add_argument("--set", action="append", default=[], help="key.path=value (CPU test only)")
    args = p.parse_args(argv)
    args.sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        p.error(f"--sizes: unknown {', '.join(unknown)} (choose from {', '.join(SIZES)})")
    args.packs = sorted({int(x) for x in args.packs.split(",") if x})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Training rates alone and packed",
        "",
        f"`python bench/packing_session.py --sizes {','.join(args.sizes)} --packs "
        f"{','.join(map(str, args.packs))} --device {args.device}` (bash bench/gpu_session.sh pack); "
        "p processes time each run's step at once; total pairs/s of the p, its gain over one "
        "process alone, and the peak memory one process allocated.",
        "",
    ]
    for k, size in enumerate(args.sizes):
        share = (args.max_s - (time.time() - started)) / (len(args.sizes) - k)
        lines += measure(size, args, deadline=time.time() + share)
    (args.out / "packing.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
