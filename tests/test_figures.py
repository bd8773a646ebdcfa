"""Figures (cdrepro.figures): every file is written, and what each figure plots is what the run's
own files (curves.csv, metrics.json, the baseline, model.pt) say; the HTML report of a workflow
run holds the figures, the tables and their captions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from stamped import stamped
from system_packages import skip_unless_installed

from cdrepro import results
from cdrepro.cli import main
from cdrepro.config import load_params
from cdrepro.data.prepared import load_prepared
from cdrepro.evaluate import embed, load_model
from cdrepro.figures import ablation, curves, heads, lime_views, tsne
from cdrepro.figures.paths import HEAD_FIGURES, FigurePaths, comparison_figure_datasets, files_of, head_runs
from cdrepro.published import load_cc_results, load_paper_results, load_repo_variability, published_rows
from cdrepro.run_settings import find_run, resolve_run, runs_of
from cdrepro.runs import ProfilePaths, Run, run_id

REPO = Path(__file__).resolve().parents[1]
CD, NO_HEAD = "digits-bs128-cd-s42", "digits-bs128-no_head-s42"
SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF"}


def tiny_params(params: dict, results_dir: Path) -> dict:
    """The embedded profile, two runs (CD and the no-head model), seconds per step."""
    params["profile"] = "tiny"
    params["results_dir"] = str(results_dir)
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=2, image_size=16, device="cpu")
    params["evaluate"]["kmeans_n_init"] = 1
    params["figures"]["tsne"].update(sample=150, max_iter=250)
    params["figures"]["lime"].update(heads=2, images_per_head=2, num_samples=20)
    params["runs"] = [{"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42} for v in ("cd", "no_head")]
    return params


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The tiny profile through every step, by the CLI: prepare ... evaluate, tsne, figures."""
    base = tmp_path_factory.mktemp("figures")
    params = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), base / "results")
    params_file = base / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    steps = [("prepare", "--dataset", "digits"), ("split", "--dataset", "digits"), ("baseline", "--dataset", "digits")]
    for rid in (CD, NO_HEAD):
        steps += [
            ("train", "--run", rid, "--threads", "1"),
            ("evaluate", "--run", rid, "--threads", "1"),
            ("tsne", "--run", rid, "--threads", "1"),
        ]
    steps.append(("figures", "--threads", "1"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDREPRO_TRACKING", "off")
        for step in steps:
            assert main([step[0], "--params", str(params_file), *step[1:]]) == 0, step
    params = load_params(params_file)
    paths = ProfilePaths.from_params(params)
    return params, params_file, paths, FigurePaths.of(paths)


def run_outputs(params: dict, paths: ProfilePaths, rid: str) -> np.ndarray:
    """The run's sigmoid heads (CD's f) on every image, computed here as evaluation does."""
    settings = resolve_run(params, find_run(params, rid))
    data = load_prepared(paths.prepared(settings.dataset))
    model = load_model(paths.model(rid), settings, data)
    return embed(
        model,
        data.images,
        settings.image_size,
        params["evaluate"]["batch_size"],
        torch.device("cpu"),
        settings.precision,
        outputs=("f",),
    )["f"]


# --------------------------------------------------------------------------- the files


def test_every_figure_is_written_as_png_pdf_and_csv(pipeline):
    _, _, _, where = pipeline
    stems = [where.tsne(CD), where.tsne(NO_HEAD), where.curves("digits"), where.ablation("digits")]
    stems += [where.head_figure(CD, name) for name in HEAD_FIGURES]
    for stem in stems:
        for path in files_of(stem):
            assert path.is_file() and path.stat().st_size > 0, path
            if path.suffix[1:] in SIGNATURES:
                assert path.read_bytes().startswith(SIGNATURES[path.suffix[1:]]), path
            else:
                assert len(pd.read_csv(path)) > 0, path
    # A run without a feature predictor has no head figures; one method, no method figure.
    assert not (where.root / "heads" / NO_HEAD).exists()
    assert not where.comparison("digits").with_suffix(".png").exists()
    assert where.summary().read_text().startswith("<!DOCTYPE html>")


def test_tsne_points_are_the_fixed_sample_with_its_true_labels(pipeline):
    params, _, paths, where = pipeline
    data = load_prepared(paths.prepared("digits"))
    sample = tsne.sample_indices(len(data), 150, params["figures"]["tsne"]["seed"])
    for rid, final_stage in ((CD, "feature"), (NO_HEAD, "projector")):
        points = pd.read_csv(where.tsne(rid).with_suffix(".csv"))
        assert list(dict.fromkeys(points["stage"])) == ["backbone", final_stage]
        for _, stage in points.groupby("stage"):
            assert stage["image"].tolist() == sample.tolist()  # the same 150 images for every run
            assert stage["label"].tolist() == data.labels[sample].tolist()
            assert stage["class"].astype(str).tolist() == [data.class_names[i] for i in data.labels[sample]]
            assert np.isfinite(stage[["x", "y"]].to_numpy()).all() and stage["x"].std() > 0


def test_the_same_run_gives_the_same_bytes(pipeline):
    """Figures carry no date or version, so DVC sees no change where there is none."""
    _, params_file, _, where = pipeline
    before = {path: path.read_bytes() for path in files_of(where.tsne(CD))}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDREPRO_TRACKING", "off")
        assert main(["tsne", "--params", str(params_file), "--run", CD, "--threads", "1"]) == 0
    assert {path: path.read_bytes() for path in before} == before


def test_curves_are_each_runs_curves_csv(pipeline):
    params, _, paths, where = pipeline
    plotted = pd.read_csv(where.curves("digits").with_suffix(".csv"))
    for run in runs_of(params):
        rid = run_id(run)
        logged = results.read_curves(paths.curves(rid))
        mine = plotted[plotted["run"] == rid]
        terms = {"loss", "instance", "lr"} | ({"feature", "entropy"} if run.variant == "cd" else set())
        assert set(mine["term"]) == terms and set(results.curve_terms(logged[0])) == terms - {"loss", "lr"}
        for term in terms:
            rows = mine[mine["term"] == term].sort_values("epoch")
            assert rows["epoch"].tolist() == [row["epoch"] for row in logged] == [1, 2]
            assert rows["value"].tolist() == [row[term] for row in logged]
        assert set(mine["label"]) == {f"{run.variant} (bs 128)"}


def test_ablation_bars_are_each_runs_metrics(pipeline):
    params, _, paths, where = pipeline
    plotted = pd.read_csv(where.ablation("digits").with_suffix(".csv"))
    for run in runs_of(params):
        metrics = json.loads(paths.metrics(run_id(run)).read_text())
        mine = plotted[(plotted["source"] == "ours") & (plotted["variant"] == run.variant)]
        # NMI/ARI/ACC of both stages, then the held-out row: kNN of both, the backbone's probe.
        assert len(mine) == 9 and set(mine["method"]) == {"cd"}
        for row in mine.itertuples():
            assert row.value == pytest.approx(metrics["stages"][row.stage][row.metric], abs=1e-12)
        assert set(mine[mine["stage_role"] == "final"]["stage"]) == {metrics["final_stage"]}
        # cd ends in its feature stage, no_head in its projector: each label says which.
        assert set(mine["label"]) == {f"{run.variant} (bs 128), {metrics['final_stage']}"}
    pixels = json.loads(paths.baseline("digits").read_text())["pixels"]
    baseline = plotted[plotted["source"] == "kmeans_pixels"]
    assert {row.metric: row.value for row in baseline.itertuples()} == pytest.approx(pixels)
    assert set(plotted["source"]) == {"ours", "kmeans_pixels"}  # the paper has no digits numbers


def test_head_statistics_are_the_models_outputs(pipeline):
    params, _, paths, where = pipeline
    final = run_outputs(params, paths, CD)
    activity = pd.read_csv(where.head_figure(CD, "head_activity").with_suffix(".csv"))
    assert activity["head"].tolist() == list(range(final.shape[1]))
    for threshold in params["figures"]["heads"]["thresholds"]:
        assert activity[heads.activity_column(threshold)].tolist() == (final > threshold).sum(axis=0).tolist()
    assert activity["mean_output"].to_numpy() == pytest.approx(final.mean(axis=0), abs=1e-6)

    corr = pd.read_csv(where.head_figure(CD, "head_correlation").with_suffix(".csv")).drop(columns="head")
    expected = np.corrcoef(final.astype(np.float64), rowvar=False)
    assert corr.shape == expected.shape
    assert np.allclose(corr.to_numpy(), expected, atol=1e-6, equal_nan=True)


def test_lime_views_show_heads_above_the_threshold(pipeline):
    params, _, paths, where = pipeline
    lime = params["figures"]["lime"]
    final = run_outputs(params, paths, CD)
    shown = pd.read_csv(where.head_figure(CD, "lime").with_suffix(".csv"))
    eligible = [h for h in range(final.shape[1]) if (final[:, h] > lime["threshold"]).sum() >= lime["images_per_head"]]
    assert list(dict.fromkeys(shown["head"])) == eligible[: lime["heads"]] and len(eligible) >= lime["heads"]
    for head, rows in shown.groupby("head"):
        assert rows["rank"].tolist() == list(range(lime["images_per_head"]))
        assert rows["output"].to_numpy() == pytest.approx(final[rows["image"], head], abs=1e-6)
        assert (rows["output"] > lime["threshold"]).all() and rows["output"].is_monotonic_decreasing
        # The highest outputs of that head over every image.
        assert rows["output"].min() >= np.sort(final[:, head])[-lime["images_per_head"]] - 1e-6
    size = params["train"]["image_size"]
    assert (shown["segments"] >= 1).all() and shown["highlighted_pixels"].between(0, size * size).all()


def test_summary_lists_every_run_with_its_numbers(pipeline):
    params, _, paths, where = pipeline
    page = where.summary().read_text()
    assert "cd (bs 128), feature" in page and "no_head (bs 128), projector" in page and "K-means (pixels)" in page
    for run in runs_of(params):
        metrics = json.loads(paths.metrics(run_id(run)).read_text())
        for scores in metrics["stages"].values():
            assert all(f"{scores[m]:.3f}" in page for m in ("nmi", "ari", "acc"))


# --------------------------------------------------------------------------- the parts


def test_head_correlation_is_pearson_with_constant_heads_blank():
    rng = np.random.default_rng(0)
    final = rng.random((50, 4)).astype(np.float32)
    final[:, 2] = 0.3
    corr = heads.head_correlation(final)
    expected = np.corrcoef(final[:, [0, 1, 3]].astype(np.float64), rowvar=False)
    assert np.allclose(corr[np.ix_([0, 1, 3], [0, 1, 3])], expected)
    assert np.isnan(corr[2]).all() and np.isnan(corr[:, 2]).all()


def test_the_tsne_sample_is_fixed_distinct_and_everything_when_small():
    first, again = tsne.sample_indices(1797, 1000, 42), tsne.sample_indices(1797, 1000, 42)
    assert first.tolist() == again.tolist() == sorted(set(first.tolist())) and len(first) == 1000
    assert tsne.sample_indices(1797, 1000, 7).tolist() != first.tolist()
    assert tsne.sample_indices(300, 1000, 42).tolist() == list(range(300))
    points = tsne.embed_2d(np.random.default_rng(0).random((20, 5)), perplexity=30, max_iter=250, seed=0)
    assert points.shape == (20, 2)  # perplexity capped below the sample size


def test_lime_picks_the_top_images_of_the_first_heads_that_fire_often_enough():
    final = np.array([[0.9, 0.1, 0.8], [0.95, 0.2, 0.76], [0.5, 0.99, 0.9], [0.8, 0.1, 0.1]])
    assert lime_views.top_images(final, 0, 0.75, 2).tolist() == [1, 0]
    assert lime_views.top_images(final, 1, 0.75, 5).tolist() == [2]
    params = {"heads": 5, "threshold": 0.75, "images_per_head": 2}
    assert lime_views.choose_heads(final, params) == [0, 2]  # head 1 fires on one image only
    assert lime_views.choose_heads(final, dict(params, heads=[1])) == [1]
    with pytest.raises(ValueError, match=r"figures.lime.heads: \[3\]"):
        lime_views.choose_heads(final, dict(params, heads=[0, 3]))


def test_ablation_references_are_the_papers_and_the_authors_numbers():
    def record(batch_size: int, variant: str, method: str = "cd") -> dict:
        final = "projector" if variant in ("no_head", "simclr") else "feature"
        return {
            "run_id": f"stl10-bs{batch_size}-{variant}-s42",
            "dataset": "stl10",
            "batch_size": batch_size,
            "method": method,
            "variant": variant,
            "seed": 42,
            "n_images": 10,
            "num_classes": 10,
            "stages": {"backbone": {"nmi": 0.1, "ari": 0.2, "acc": 0.3}, final: {"nmi": 0.4, "ari": 0.5, "acc": 0.6}},
            "final_stage": final,
        }

    metrics = [record(b, v) for b, v in ((128, "cd"), (256, "cd"), (128, "no_head"), (128, "no_ne"))]
    metrics.append(record(128, "simclr", "simclr"))
    pixels = {"dataset": "stl10", "n_images": 10, "num_classes": 10, "pixels": {"nmi": 0.12, "ari": 0.06, "acc": 0.19}}
    ours = results.collect(metrics, [pixels])  # the baseline has no batch size: a float column
    paper, repo = load_paper_results(), load_repo_variability()
    frame = ablation.chart_frame("stl10", ours, paper, repo)

    cd256 = frame[(frame["source"] == "paper") & (frame["label"] == "cd (bs 256), feature")]
    row = paper[(paper["dataset"] == "stl10") & (paper["method"] == "CD-256") & (paper["stage"] == "feature")].iloc[0]
    assert cd256[(cd256["stage_role"] == "final") & (cd256["metric"] == "acc")]["value"].item() == row["acc"]
    authors = frame[frame["source"] == "authors_repo"]
    assert set(authors["label"]) == {"cd (bs 128), feature", "no_head (bs 128), projector"}
    mine = repo[(repo["dataset"] == "stl10") & (repo["model"] == "no_head") & (repo["stage"] == "feature")].iloc[0]
    pick = authors[
        (authors["variant"] == "no_head") & (authors["stage_role"] == "final") & (authors["metric"] == "nmi")
    ]
    assert (pick["value"].item(), pick["std"].item()) == (mine["nmi_mean"], mine["nmi_std"])
    assert frame[frame["variant"] == "no_ne"]["source"].unique().tolist() == ["ours"]
    assert frame[frame["variant"] == "simclr"]["source"].unique().tolist() == ["ours"]  # not CD: no reference
    assert len(frame[frame["source"] == "paper"]) == 2 * 2 * 3  # CD-128/256 x 2 stages x 3 metrics
    assert frame[frame["source"] == "kmeans_pixels"]["value"].tolist() == [0.12, 0.06, 0.19]


def test_curves_take_a_methods_own_terms_from_curves_csv(tmp_path):
    """A term no figure code knows gets its own panel, titled by its name; known ones keep theirs."""
    path = tmp_path / "curves.csv"
    path.write_text(
        "epoch,lr,loss,instance,cluster_entropy,seconds,pairs_per_s\n"
        "1,0.1,3.0,2.0,1.0,1.5,100\n2,0.05,2.5,1.8,0.7,1.4,110\n"
    )
    frame = curves.curves_frame([(Run("digits", 128, "toy", 42), path)])
    assert curves.panels(frame) == ["total loss", "instance loss", "cluster_entropy", "learning rate"]
    assert frame[frame["term"] == "cluster_entropy"]["value"].tolist() == [1.0, 0.7]
    figure = curves.plot_curves(frame, "Toy")
    assert [ax.get_title() for ax in figure.axes] == ["total loss", "instance loss", "cluster_entropy", "learning rate"]


@pytest.mark.parametrize("text", ["", "epoch,lr,loss,instance,seconds,pairs_per_s\n"], ids=["empty", "header only"])
def test_a_curves_file_without_epochs_is_refused_not_left_out_of_the_figure(tmp_path, text):
    """Left out, the run was missing from its dataset's curves without a word."""
    good = write_curves(tmp_path / "cd" / "curves.csv", ["instance"])
    bad = tmp_path / "cc" / "curves.csv"
    bad.parent.mkdir()
    bad.write_text(text)
    runs = [(Run("digits", 128, "cd", 42), good), (Run("digits", 128, "cc", 42), bad)]
    said = (
        rf"^{bad} holds no epochs .* digits-bs128-cc-s42 would be missing from the training curves: "
        r"write it again with cdrepro train --run digits-bs128-cc-s42 "
    )
    with pytest.raises(results.ResultsError, match=said):
        curves.curves_frame(runs)


def write_curves(path: Path, terms: list[str]) -> Path:
    """A curves.csv of two epochs with the given terms (values: the term's index + epoch / 10)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [",".join(["epoch", "lr", "loss", *terms, "seconds", "pairs_per_s"])]
    rows += [",".join(map(str, [e, 0.1, 3.0, *(i + e / 10 for i in range(len(terms))), 1.0, 100])) for e in (1, 2)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_curves_of_several_methods_have_one_panel_per_term_and_lines_only_where_a_run_has_it(tmp_path):
    """CD, CC and CDC on one dataset: shared terms share a panel (instance), a name that means two
    things gets two (CD's NE is maximised, CC's entropy minimised), each panel draws the runs
    that log the term and no other."""
    terms = {
        "cd": ["instance", "feature", "entropy"],
        "cc": ["instance", "cluster", "entropy"],
        "cdc": ["contrast", "swap"],
    }
    runs = [(Run("digits", 128, v, 42), write_curves(tmp_path / v / "curves.csv", t)) for v, t in terms.items()]
    frame = curves.curves_frame(runs, {"cd": "cd", "cc": "cc", "cdc": "cdc"})
    shown = curves.panels(frame)
    assert shown == [
        "total loss",
        "instance loss",
        "feature loss",
        "normalized entropy NE",
        "cluster contrast (CC)",
        "cluster entropy log K - H(p) (CC)",
        "joint contrast on [p; z] (CDC)",
        "swapped Sinkhorn cross-entropy (CDC)",
        "learning rate",
    ]
    drawn = {panel: set(frame[frame["panel"] == panel]["variant"]) for panel in shown}
    assert drawn["instance loss"] == {"cd", "cc"} and drawn["normalized entropy NE"] == {"cd"}
    assert drawn["cluster entropy log K - H(p) (CC)"] == {"cc"} and drawn["total loss"] == set(terms)
    figure = curves.plot_curves(frame, "Digits")
    axes = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert list(axes) == shown  # wrapped onto two rows, the spare axes hidden
    for panel, variants in drawn.items():
        assert len(axes[panel].get_lines()) == len(variants), panel
    cc_entropy = frame[(frame["variant"] == "cc") & (frame["term"] == "entropy")]
    assert cc_entropy["value"].tolist() == [2.1, 2.2]  # the third term of CC's curves.csv


FINAL_STAGES = {"cd": "feature", "simclr": "projector", "cc": "cluster", "cld": "group", "cdc": "cluster"}


def fake_results(params: dict, target: str | None) -> None:
    """A metrics.json for every run of ``target`` and a baseline per dataset, numbers from the
    run's id, each final stage named as its method names it."""
    paths = ProfilePaths.from_params(params)
    variants = results.variant_infos(params)
    for i, run in enumerate(runs_of(params, target)):
        method = variants[run.variant].method
        scores = [
            {m: round(0.1 + (i * 7 + j * 3 + k) % 80 / 100, 3) for k, m in enumerate(("nmi", "ari", "acc"))}
            for j in range(2)
        ]
        results.write_metrics(
            paths.metrics(run_id(run)),
            stamped(
                params,
                {
                    "run_id": run_id(run),
                    "dataset": run.dataset,
                    "batch_size": run.batch_size,
                    "method": method,
                    "variant": run.variant,
                    "seed": run.seed,
                    "n_images": 100,
                    "num_classes": 10,
                    "stages": {"backbone": scores[0], FINAL_STAGES[method]: scores[1]},
                    "final_stage": FINAL_STAGES[method],
                },
            ),
        )
    for dataset in {run.dataset for run in runs_of(params, target)}:
        from cdrepro.atomic import write_json

        write_json(
            paths.baseline(dataset),
            {"dataset": dataset, "n_images": 100, "num_classes": 10, "pixels": {"nmi": 0.11, "ari": 0.05, "acc": 0.2}},
        )


def test_comparison_figure_datasets_are_those_with_several_methods(embedded_params):
    paper = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())
    assert comparison_figure_datasets(paper) == ["imagenet10", "stl10"]  # CIFAR: only CC's recipe
    assert comparison_figure_datasets(embedded_params) == ["digits"]
    embedded_params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42} for v in ("cd", "no_head")
    ]  # no run for compare_methods: every run
    assert comparison_figure_datasets(embedded_params) == []
    embedded_params["runs"].append({"dataset": "digits", "batch_size": 128, "variant": "cc", "seed": 42})
    assert comparison_figure_datasets(embedded_params) == ["digits"]


def test_the_comparison_figure_is_written_with_the_methods_tables_numbers(tmp_path):
    from cdrepro.comparison.frame import comparison_frame
    from cdrepro.figures import comparison
    from cdrepro.figures.profile import comparison_figures

    params = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())
    params["results_dir"] = str(tmp_path / "results")
    fake_results(params, "compare_methods")
    paths = ProfilePaths.from_params(params)
    where = FigurePaths.of(paths)
    loaded = results.ProfileResults.load(params, target="compare_methods")
    written = comparison_figures(params, loaded, where, dpi=40)
    assert written == [*files_of(where.comparison("imagenet10")), *files_of(where.comparison("stl10"))]
    for path in written:
        assert path.stat().st_size > 0
    assert not where.comparison("cifar10").with_suffix(".png").exists()

    plotted = pd.read_csv(where.comparison("stl10").with_suffix(".csv"), keep_default_na=False, na_values=[""])
    ours = plotted[plotted["source"] == "ours"]
    for run in runs_of(params, "compare_methods"):
        if run.dataset != "stl10":
            continue
        metrics = json.loads(paths.metrics(run_id(run)).read_text())
        mine = ours[ours["variant"] == run.variant]
        assert len(mine) == 6, run
        for row in mine.itertuples():
            assert row.value == metrics["stages"][row.stage][row.metric]
    assert set(ours["label"]) == {
        "CD, bs 128",
        "SimCLR, bs 128",
        "CC, bs 128",
        "CC (cc_published), bs 256",
        "CLD, bs 128",
        "CDC (reconstructed), bs 128",
    }
    assert plotted[plotted["source"] == "kmeans_pixels"]["value"].tolist() == [0.11, 0.05, 0.2]
    refs = plotted[~plotted["source"].isin(["ours", "kmeans_pixels", comparison.DIFFERENCE])]
    assert set(refs["label"]) == {
        "CD's paper: K-means",
        "CD's paper: CD-128",
        "CD's paper: CC",
        "CC's paper",
        "CD authors' repository: no-head model",
    }
    cc = refs[(refs["label"] == "CC's paper")]
    assert dict(zip(cc["metric"], cc["value"], strict=True)) == {"nmi": 0.764, "ari": 0.726, "acc": 0.850}
    assert cc[~cc["confirmed"].astype(bool)]["metric"].tolist() == ["ari"]

    # One chart row per bar or published source, in the methods table's order.
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability())
    figure = comparison.plot_comparison(comparison.chart_frame(comparison_frame(loaded, published), "stl10"), "STL-10")
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "CD's paper: K-means",
        "CD, bs 128",
        "CD's paper: CD-128",
        "SimCLR, bs 128",
        "CD authors' repository: no-head model",
        "CC, bs 128",
        "CC (cc_published), bs 256",
        "CD's paper: CC",
        "CC's paper",
        "CLD, bs 128",
        "CDC (reconstructed), bs 128",
    ]


def test_the_comparison_figure_draws_95_intervals_over_seeds_and_the_paired_differences():
    from matplotlib.container import BarContainer
    from scipy import stats

    from cdrepro.comparison.frame import comparison_frame
    from cdrepro.figures import comparison

    nmi = {"cd": {1: 0.60, 2: 0.64, 3: 0.61}, "simclr": {1: 0.50, 2: 0.55, 3: 0.52}, "cc": {1: 0.45}}
    metrics = [
        {
            "run_id": f"digits-bs128-{m}-s{seed}",
            "dataset": "digits",
            "batch_size": 128,
            "method": m,
            "variant": m,
            "seed": seed,
            "n_images": 100,
            "num_classes": 10,
            "final_stage": FINAL_STAGES[m],
            "stages": {"backbone": {"nmi": v, "ari": v, "acc": v}, FINAL_STAGES[m]: {"nmi": v, "ari": v, "acc": v}},
        }
        for m, seeds in nmi.items()
        for seed, v in seeds.items()
    ]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    loaded = results.ProfileResults(metrics, [], {"digits": "Digits"}, results.variant_infos(params))
    published = published_rows(load_paper_results(), load_cc_results(), load_repo_variability())
    frame = comparison.chart_frame(comparison_frame(loaded, published), "digits")

    ours = frame[(frame["source"] == "ours") & (frame["stage_role"] == "final") & (frame["metric"] == "nmi")]
    cd = ours[ours["method"] == "cd"].iloc[0]
    values = list(nmi["cd"].values())
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (cd["ci_low"], cd["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    differences = frame[frame["source"] == comparison.DIFFERENCE]
    assert set(differences["stage_role"]) == {"final"}
    assert list(dict.fromkeys(differences["label"])) == [
        "CD − SimCLR, bs 128",
        "CD − CC, bs 128 (one seed)",
        "SimCLR − CC, bs 128 (one seed)",
    ]
    pair = differences[(differences["label"] == "CD − SimCLR, bs 128") & (differences["metric"] == "nmi")].iloc[0]
    test = stats.ttest_rel(values, list(nmi["simclr"].values()))
    assert (pair["ci_low"], pair["ci_high"]) == tuple(pytest.approx(x) for x in test.confidence_interval(0.95))
    assert pair["value"] == pytest.approx(np.mean(values) - np.mean(list(nmi["simclr"].values())))

    figure = comparison.plot_comparison(frame, "Digits")
    axes = {ax.get_title(): ax for ax in figure.axes}
    bars = next(c for c in axes["final stage: NMI"].containers if isinstance(c, BarContainer))
    (segments,) = [line.get_segments() for line in bars.errorbar.lines[2]]
    labels = [t.get_text() for t in axes["backbone: NMI"].get_yticklabels()]
    assert labels == ["CD, bs 128", "SimCLR, bs 128", "CC, bs 128"]
    assert [segments[0][0][0], segments[0][1][0]] == [pytest.approx(low), pytest.approx(high)]
    assert segments[2][0][0] == segments[2][1][0]  # CC: one seed, no bar
    assert "final stage: NMI difference" in axes
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert any("95% CI over seeds" in t and "no bar: one seed" in t for t in legend), legend
    assert any("no interval" in t for t in legend), legend


def test_head_figures_are_for_runs_whose_method_has_sigmoid_heads(embedded_params):
    embedded_params["variants"]["simclr"] = {"method": "simclr"}
    embedded_params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42} for v in ("cd", "no_head", "no_ne", "simclr")
    ]
    assert [run.variant for run in head_runs(embedded_params)] == ["cd", "no_ne"]


# --------------------------------------------------------------------------- workflow and report


@pytest.mark.slow
def test_workflow_figures_and_html_report(tmp_path):
    """`snakemake all` on a tiny profile makes every figure, then `snakemake --report` one HTML
    file holding them, the tables, the captions and the params."""
    params = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), Path("results"))
    params["figures"]["tsne"]["sample"] = 100
    params["model"]["backbone_width"] = 8
    params["train"]["epochs"] = 1
    params_file = tmp_path / "tiny.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args, "--configfile", str(params_file)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    made = snakemake("--cores", "2", "all")
    assert made.returncode == 0, made.stderr[-4000:]
    where = FigurePaths.of(ProfilePaths(tmp_path / "results" / "tiny"))
    for stem in [
        where.tsne(CD),
        where.tsne(NO_HEAD),
        where.curves("digits"),
        where.ablation("digits"),
        *(where.head_figure(CD, name) for name in HEAD_FIGURES),
    ]:
        assert all(path.stat().st_size > 0 for path in files_of(stem)), stem
    assert "Nothing to be done" in snakemake("-n", "all").stdout

    report = snakemake("--report", "report.html")
    assert report.returncode == 0, report.stderr[-4000:]
    page = (tmp_path / "report.html").read_text()
    for caption in (
        "t-SNE of 100 images",
        "LIME views of single feature heads",
        "How many images (of the whole dataset) each feature head fires on",
        "Pearson correlation between the feature heads",
        "Training curves of every run",
        "NMI / ARI / ACC per run of this dataset",
        "One of the paper",
        "K-means NMI / ARI / ACC of every run",
    ):
        assert caption in page, caption
    for name in [
        f"{CD}.png",
        f"{NO_HEAD}.png",
        "curves_digits.png",
        "ablation_digits.png",
        "head_activity.png",
        "head_correlation.png",
        "lime.png",
        "summary.html",
        "table2.tex",
        "all.csv",
    ]:
        assert name in page, name
    assert "Contrastive Disentangling reproduction, profile" in page
    # The first screen (the workflow description): what ran, the methods table, the key figures;
    # the params file folded into one line, not dumped (tests/workflow/test_report_page.py: the rest).
    first = json.loads(re.search(r"var workflow_desc = (.*);\n", page).group(1))
    assert '<strong>Profile</strong> <tt class="docutils literal">tiny</tt>: 2 runs on Digits' in first
    assert "<td>CD (no_head)</td><td>128</td><td>Ours</td><td>projector</td><td>one seed</td>" in first
    assert first.index('<table class="cdrepro-methods">') < first.index('alt="curves_digits.png" src="data:image/png;')
    assert '"profile":' not in first and "&quot;profile&quot;" not in first and "System Message" not in first
    assert "profile: tiny" in first.split('<details class="cdrepro-params">', 1)[1]
    # Self-contained: every figure is inside the file as a data URI, not a link to results/.
    assert page.count("data:image/png;") >= 2 + 2 + len(HEAD_FIGURES) and "data:text/html;" in page
    # In a browser, the report opens on it: the methods table is in the page Snakemake's app draws.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    skip_unless_installed(None if chromium else "no chromium: the report's first screen is not drawn")
    drawn = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert '<table class="cdrepro-methods">' in drawn.stdout, drawn.stdout[-3000:] + drawn.stderr[-2000:]


@pytest.mark.parametrize(
    "algorithm, options",
    [("slic", {"n_segments": 16, "compactness": 10}), ("quickshift", {"kernel_size": 2, "max_dist": 4})],
)
def test_lime_superpixels_are_numbered_from_zero_as_lime_switches_them_off(algorithm, options):
    """LIME switches superpixel z off by masking ``segments == z`` for z in 0..n-1: SLIC's own
    numbering from 1 would leave one superpixel never switched off, and feature 0 empty."""
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    image = np.kron(np.random.default_rng(0).random((4, 4, 3)), np.ones((4, 4, 1)))  # 16 flat patches
    raw = SegmentationAlgorithm(algorithm, **options, random_seed=0)(image)
    segments = lime_views.segmenter({"algorithm": algorithm, "options": options}, seed=0)(image)
    n = np.unique(raw).size
    assert n > 1 and np.array_equal(np.unique(segments), np.arange(n))
    assert all(len(np.unique(segments[raw == label])) == 1 for label in np.unique(raw))  # same regions
