"""The summary of a GPU comparison session (bench/quick_session.py): rates by packing factor,
each run's epochs, time and scores, and what bounds the training step, as summary.json and
summary.md in the session's folder.

What bounds the step is read from four measurements of the probe (bench/packing_probe.py):
  - busy: GPU kernel time per step (profiled) over the step's wall time, one process alone.
    Well below 1: the GPU waits for the host (kernel launches, Python): launch-bound.
  - packing: the total pairs/s of 2 or 3 processes at once over one process's. Well above 1:
    one process left the GPU idle (launch-bound); about 1: the GPU is saturated.
  - achieved TFLOP/s (the step's FLOPs times its rate) against a bf16 matrix product measured
    on the same device: a busy GPU far below it spends its time moving memory (BatchNorm,
    activations and small-map convolutions: memory bandwidth); near it, compute-bound.
  - the input path: the step against the model-only step and the augment-only path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BUSY_LAUNCH_BOUND = 0.6  # below: the GPU is idle 40% of a step or more
PACKING_GAIN = 1.3  # above: a second process fills idle time
COMPUTE_FRACTION = 0.5  # of the measured matrix-product ceiling


def packing_rows(rates: dict[str, Any]) -> list[dict[str, Any]]:
    totals = rates.get("total_pairs_per_s", {})
    one = totals.get("1")
    rows = []
    for p, total in totals.items():
        runs = rates["packs"][p].values()
        per_process = [x for r in runs for x in r["per_process_pairs_per_s"]]
        used = [r["device_used_gib"] for r in runs if r.get("device_used_gib") is not None]
        peaks = [r["peak_allocated_gib_per_process"] for r in runs if r.get("peak_allocated_gib_per_process")]
        rows.append(
            {
                "packing": int(p),
                "total_pairs_per_s": total,
                "per_process_pairs_per_s": round(sum(per_process) / len(per_process), 1),
                "gain_over_one": round(total / one, 3) if one else None,
                "device_used_gib": max(used) if used else None,
                "peak_allocated_gib_per_process": max(peaks) if peaks else None,
            }
        )
    return rows


def number(value: Any) -> float | None:
    """A measured number, or None where the probe recorded an error or nothing."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def step_anatomy(rates: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per run, one process alone: the step, model-only and input-path times, busy, TFLOP/s."""
    anatomy, alone = rates.get("anatomy", {}), rates.get("packs", {}).get("1", {})
    ceiling = number(anatomy.get("ceilings", {}).get("bf16_matmul_tflops"))
    augment_ms = number(anatomy.get("augment_only", {}).get("ms_per_step"))
    rows = {}
    for rid, part in anatomy.items():
        if rid in ("ceilings", "augment_only") or rid not in alone:
            continue
        step_ms, rate = alone[rid]["ms_per_step"][0], alone[rid]["total_pairs_per_s"]
        gpu_ms = number(part.get("profile", {}).get("gpu_ms_per_step"))
        flops = number(part.get("flops_per_pair"))
        tflops = flops * rate / 1e12 if flops else None
        rows[rid] = {
            "step_ms": step_ms,
            "model_only_ms": number(part.get("model_only", {}).get("ms_per_step")),
            "augment_only_ms": augment_ms,
            "pairs_per_s": rate,
            "kernels_per_step": number(part.get("profile", {}).get("kernels_per_step")),
            "gpu_ms_per_step": gpu_ms,
            "busy": round(gpu_ms / step_ms, 3) if gpu_ms else None,
            "gflop_per_pair": round(flops / 1e9, 3) if flops else None,
            "tflops": round(tflops, 2) if tflops else None,
            "of_matmul_ceiling": round(tflops / ceiling, 3) if tflops and ceiling else None,
        }
    return rows


def verdict(packing: list[dict[str, Any]], anatomy: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences from the numbers, by the rules in the module's docstring."""
    lines = []
    best = max(packing, key=lambda r: r["total_pairs_per_s"], default=None)
    if best and best["gain_over_one"]:
        gain = best["gain_over_one"]
        lines.append(
            f"Packing: {best['packing']} processes give {gain:.2f}x one process's total pairs/s; "
            + (
                "one process leaves the GPU idle (launch/host-bound)."
                if gain >= PACKING_GAIN
                else "the GPU is near saturation with one process."
            )
        )
    busy = [r["busy"] for r in anatomy.values() if r.get("busy")]
    if busy:
        mean_busy = sum(busy) / len(busy)
        lines.append(
            f"Busy: GPU kernels fill {mean_busy:.0%} of a step on average (one process); "
            + ("launch/host-bound." if mean_busy < BUSY_LAUNCH_BOUND else "the GPU is the limit.")
        )
    fractions = [r["of_matmul_ceiling"] for r in anatomy.values() if r.get("of_matmul_ceiling")]
    if fractions and busy and sum(busy) / len(busy) >= BUSY_LAUNCH_BOUND:
        frac = sum(fractions) / len(fractions)
        lines.append(
            f"Compute: {frac:.0%} of the measured bf16 matrix-product rate; "
            + (
                "compute-bound."
                if frac >= COMPUTE_FRACTION
                else "a busy GPU this far below it is bound by memory bandwidth (activations, "
                "BatchNorm, elementwise passes over small maps)."
            )
        )
    inputs = [1 - r["model_only_ms"] / r["step_ms"] for r in anatomy.values() if r["model_only_ms"]]
    if inputs:
        augment_ms = next(iter(anatomy.values()))["augment_only_ms"]
        lines.append(
            f"Input path: {sum(inputs) / len(inputs):.0%} of a step's time is beyond the model step "
            f"on fixed views; the input path alone (augment-only) takes {cell(augment_ms)} ms a batch."
        )
    return lines or ["The probe measured too little to say what bounds the step."]


def run_rows(out: Path, runs: list[str], outcomes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for rid in runs:
        train = read(out / "runs" / rid / "train.json")
        metrics = read(out / "runs" / rid / "metrics.json")
        outcome = outcomes.get(rid, {})
        wall = outcome.get("train", {}).get("wall_s")
        final = metrics.get("stages", {}).get(metrics.get("final_stage", ""), {})
        backbone = next(iter(metrics.get("stages", {}).values()), {})
        rows[rid] = {
            "train": outcome.get("train"),
            "evaluate": outcome.get("evaluate"),
            "epochs": train.get("epochs"),
            "train_seconds": train.get("train_seconds"),
            "startup_s": round(wall - train["train_seconds"], 1) if wall and train else None,
            "pairs_per_s_last_epoch": train.get("final", {}).get("pairs_per_s"),
            "final_loss": train.get("final", {}).get("loss"),
            "backbone_nmi": backbone.get("nmi"),
            "final_nmi": final.get("nmi"),
            "final_acc": final.get("acc"),
        }
    return rows


def read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# GPU comparison: {summary['device_name']} (torch {summary['torch']})",
        "",
        f"Wall time {summary['time_s']} s of a {summary['budget_s']} s budget; packing "
        f"{summary['plan'].get('packing')}, {summary['plan'].get('epochs')} epochs per run "
        f"(predicted {summary['plan'].get('predicted_s')} s for training).",
        "",
        "## What bounds the step",
        "",
    ]
    lines += [f"- {line}" for line in summary["verdict"]]
    lines += [
        "",
        table(summary["packing"]),
        "",
        table([{"run": k, **v} for k, v in summary["anatomy"].items()]),
        "",
        "## Runs",
        "",
        table([{"run": k, **{c: v[c] for c in RUN_COLUMNS}} for k, v in summary["runs"].items()]),
    ]
    return "\n".join(lines) + "\n"


RUN_COLUMNS = (
    "epochs",
    "train_seconds",
    "startup_s",
    "pairs_per_s_last_epoch",
    "final_loss",
    "backbone_nmi",
    "final_nmi",
    "final_acc",
)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    body = ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *body])


def write(
    out: Path,
    rates: dict[str, Any],
    plan: dict[str, Any],
    outcomes: dict[str, Any],
    steps: dict[str, Any],
    time_s: float,
) -> dict[str, Any]:
    first = (rates.get("ranks") or [{}])[0]
    packing = packing_rows(rates)
    anatomy = step_anatomy(rates)
    summary = {
        "device_name": first.get("device_name"),
        "torch": first.get("torch"),
        "time_s": time_s,
        "budget_s": plan.get("budget_s"),
        "plan": {k: v for k, v in plan.items() if k != "options"},
        "packing": packing,
        "anatomy": anatomy,
        "ceilings": rates.get("anatomy", {}).get("ceilings"),
        "verdict": verdict(packing, anatomy),
        "steps": steps,
        "runs": run_rows(out, list(plan.get("epoch_s", {})), outcomes),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    return summary
