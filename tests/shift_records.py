"""Hand-made metrics.json records and profile results for the shift tables' tests
(``cdrepro.comparison.shift``: many clusters, long tail)."""

from __future__ import annotations

from typing import Any

from cdrepro.results import ProfileResults

PIXELS = {"nmi": 0.1, "ari": 0.05, "acc": 0.2}


def metrics_record(dataset: str, method: str, stages: dict, final: str, num_classes: int, **extra: Any) -> dict:
    """One run's metrics.json at batch 128, seed 0, its variant named after its method."""
    return {
        "run_id": f"{dataset}-bs128-{method}-s0",
        "dataset": dataset,
        "batch_size": 128,
        "method": method,
        "variant": method,
        "seed": 0,
        "n_images": 60000,
        "num_classes": num_classes,
        "stages": stages,
        "final_stage": final,
        **extra,
    }


def profile_results(metrics: list[dict], titles: dict[str, str]) -> ProfileResults:
    """The records with a pixel baseline per dataset; no variant infos, so labels are method names."""
    classes = {m["dataset"]: m["num_classes"] for m in metrics}
    baselines = [
        {"dataset": d, "n_images": 60000, "num_classes": k, "pixels": PIXELS} for d, k in sorted(classes.items())
    ]
    return ProfileResults(list(metrics), baselines, titles, {}, "test")
