"""GPU K-means (cdrepro.kmeans) against scikit-learn's KMeans on a trained run's real features.

Embeds every image of the run's prepared dataset with its final model (as ``cdrepro evaluate``),
then clusters the backbone and the final outputs with both backends: seconds, inertia and
NMI/ARI/ACC. Needs the run to be trained and its dataset prepared.

    python bench/kmeans_on_features.py bench/gpu_check.yaml cifar10s-bs256-cd-s42 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from sklearn.cluster import KMeans

from cdrepro.config import load_params
from cdrepro.data.prepared import load_prepared
from cdrepro.device import select_device
from cdrepro.evaluate import embed, load_model
from cdrepro.kmeans import kmeans
from cdrepro.metrics import clustering_scores
from cdrepro.run_settings import find_run, resolve_run
from cdrepro.runs import ProfilePaths


def compare(features, labels, k: int, n_init: int, seed: int, device: torch.device) -> dict:
    started = time.perf_counter()
    ref = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(features.astype("float64"))
    sk = {
        "seconds": time.perf_counter() - started,
        "inertia": float(ref.inertia_),
        **clustering_scores(labels, ref.labels_),
    }
    x = torch.from_numpy(features).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fit = kmeans(x, k, n_init=n_init, seed=seed)
    ours_labels = fit.labels.cpu().numpy()  # the copy waits for the device
    tk = {"seconds": time.perf_counter() - started, "inertia": fit.inertia, **clustering_scores(labels, ours_labels)}
    return {"sklearn": sk, "torch": tk, "inertia_ratio": tk["inertia"] / sk["inertia"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("params")
    p.add_argument("run")
    p.add_argument("--json")
    args = p.parse_args()
    params = load_params(args.params)
    settings = resolve_run(params, find_run(params, args.run))
    paths = ProfilePaths.from_params(params)
    device = select_device(settings.device)
    data = load_prepared(paths.prepared(settings.dataset))
    model = load_model(paths.model(args.run), settings)
    h, final = embed(
        model, data.images, settings.image_size, params["evaluate"]["batch_size"], device, settings.precision
    )
    kmeans(torch.from_numpy(h[:1000]).to(device), data.num_classes, n_init=1)  # warm-up
    ev = params["evaluate"]
    report = {"run": args.run, "device": str(device), "n": len(data), "k": data.num_classes}
    for name, features in (("backbone", h), ("feature", final)):
        report[name] = compare(features, data.labels, data.num_classes, ev["kmeans_n_init"], ev["kmeans_seed"], device)
        r = report[name]
        print(
            f"{name:>8} ({features.shape[1]} dims): sklearn {r['sklearn']['seconds']:.2f} s "
            f"NMI {r['sklearn']['nmi']:.4f} | torch {r['torch']['seconds']:.2f} s "
            f"NMI {r['torch']['nmi']:.4f} | inertia ratio {r['inertia_ratio']:.4f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
