"""Tests of cdrepro.results: the records (metrics, baselines, curves) and their checks, a
profile's results, and the long frame the tables and figures read."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import pytest
import yaml
from stamped import stamped

from cdrepro import published, results
from cdrepro import run_settings as rs
from cdrepro.atomic import write_json
from cdrepro.cli import main
from cdrepro.results import BASELINE_VARIANT, ProfileResults, ResultsError
from cdrepro.runs import ProfilePaths

REPO = Path(__file__).resolve().parents[1]
SCORES = ("nmi", "ari", "acc")


def scores(base: float) -> dict[str, float]:
    return {s: round(base + i / 100, 4) for i, s in enumerate(SCORES)}


def metrics_record(
    variant="cd", seed=42, method="cd", stages=("backbone", "feature"), batch_size=128, dataset="digits", base=0.5
) -> dict:
    """A metrics.json record, as ``cdrepro evaluate`` writes it."""
    return {
        "run_id": f"{dataset}-bs{batch_size}-{variant}-s{seed}",
        "dataset": dataset,
        "batch_size": batch_size,
        "method": method,
        "variant": variant,
        "seed": seed,
        "n_images": 1797,
        "num_classes": 10,
        "stages": {name: scores(base + i / 10 + seed / 1000) for i, name in enumerate(stages)},
        "final_stage": stages[-1],
    }


BASELINE = {"dataset": "digits", "n_images": 1797, "num_classes": 10, "pixels": scores(0.3)}


# --------------------------------------------------------------------------- records


def test_metrics_round_trip(tmp_path):
    path = tmp_path / "runs" / "digits-bs128-cd-s42" / "metrics.json"
    record = metrics_record()
    results.write_metrics(path, record)
    assert results.read_metrics(path) == record
    assert list(results.read_metrics(path)["stages"]) == ["backbone", "feature"]  # order kept
    # Three stages, written in the method's order, read back in it; a writer that sorts keys
    # (backbone, cluster, projector) still reads back with backbone first and the final last.
    record = metrics_record("toy", method="toy", stages=("backbone", "projector", "cluster"))
    results.write_metrics(path, record)
    assert list(results.read_metrics(path)["stages"]) == ["backbone", "projector", "cluster"]
    write_json(path, record)
    assert list(json.loads(path.read_text())["stages"]) == ["backbone", "cluster", "projector"]
    assert list(results.read_metrics(path)["stages"]) == ["backbone", "projector", "cluster"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON"),
        ('"a string"', "not a JSON object"),
        (
            json.dumps(
                {k: v for k, v in metrics_record().items() if k != "stages"}
                | {"backbone": scores(0.1), "feature": scores(0.2), "feature_stage": "feature"}
            ),
            "before methods",
        ),
        (json.dumps(metrics_record() | {"final_stage": "backbone"}), "must name the method's last stage"),
        (json.dumps(metrics_record() | {"final_stage": "cluster"}), "must name the method's last stage"),
        (json.dumps(metrics_record() | {"stages": {"feature": scores(0.1)}}), "'backbone' among them"),
        (
            json.dumps(metrics_record() | {"stages": {"backbone": {"nmi": 0.1}, "feature": scores(0.1)}}),
            "stages.backbone",
        ),
        (json.dumps(metrics_record() | {"seed": "42"}), "'seed'"),
    ],
)
def test_a_bad_metrics_file_is_one_line_naming_the_file_and_the_fix(tmp_path, text, says):
    path = tmp_path / "runs" / "digits-bs128-cd-s42" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ResultsError) as raised:
        results.read_metrics(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and says in message, message
    assert message.endswith("re-run `cdrepro evaluate --run digits-bs128-cd-s42`")
    assert isinstance(raised.value, ValueError)  # the CLI's one-line errors


def test_a_missing_metrics_file_says_how_to_make_it(tmp_path):
    path = tmp_path / "runs" / "digits-bs128-cd-s42" / "metrics.json"
    with pytest.raises(FileNotFoundError, match=r"metrics.json: not found; .*cdrepro evaluate --run digits-bs128"):
        results.read_metrics(path)


def test_a_bad_baseline_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "baselines" / "digits.json"
    write_json(path, BASELINE)
    assert results.read_baseline(path) == BASELINE
    write_json(path, {**BASELINE, "pixels": {"nmi": 0.1}})
    with pytest.raises(ResultsError, match=r"digits.json: .*pixels.*cdrepro baseline --dataset digits"):
        results.read_baseline(path)


def test_curves_are_dicts_of_floats_and_terms_sit_between_loss_and_seconds(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text(
        "epoch,lr,loss,instance,cluster,seconds,pairs_per_s\n1,0.1,2.5,2.0,0.5,3.0,100\n2,0.05,2.0,1.8,,3.1,99\n"
    )
    rows = results.read_curves(path)
    assert rows == [
        {"epoch": 1.0, "lr": 0.1, "loss": 2.5, "instance": 2.0, "cluster": 0.5, "seconds": 3.0, "pairs_per_s": 100.0},
        {"epoch": 2.0, "lr": 0.05, "loss": 2.0, "instance": 1.8, "seconds": 3.1, "pairs_per_s": 99.0},
    ]
    assert results.curve_terms(rows[0]) == ["instance", "cluster"]
    assert results.curve_terms(["epoch", "lr", "loss", "seconds", "pairs_per_s"]) == []
    path.write_text("epoch,lr,loss\n1,abc,2\n")
    with pytest.raises(ResultsError, match="curves.csv: not a curves file"):
        results.read_curves(path)


# --------------------------------------------------------------------------- the long frame


def test_the_frame_has_method_stage_and_role_and_aggregates_over_seeds():
    runs = [metrics_record(seed=s) for s in (42, 43, 44)]
    runs.append(metrics_record("no_head", stages=("backbone", "projector")))
    frame = results.collect(runs, [BASELINE])
    assert list(frame.columns) == results.FRAME_COLUMNS
    cd = frame[(frame.variant == "cd") & (frame.stage == "feature") & (frame.metric == "ari")].iloc[0]
    values = [run["stages"]["feature"]["ari"] for run in runs[:3]]
    assert (cd["method"], cd["stage_role"], cd["n_seeds"], cd["seeds"]) == ("cd", "final", 3, "42;43;44")
    assert cd["mean"] == pytest.approx(statistics.fmean(values))
    assert cd["std"] == pytest.approx(statistics.stdev(values))
    assert [float(v) for v in cd["values"].split(";")] == values
    no_head = frame[frame.variant == "no_head"]
    stages = list(dict.fromkeys(zip(no_head.stage, no_head.stage_role, strict=True)))
    assert stages == [("backbone", "backbone"), ("projector", "final")]
    assert no_head["std"].isna().all() and (no_head["n_seeds"] == 1).all()
    pixels = frame[frame.variant == BASELINE_VARIANT]
    assert (
        set(zip(pixels.stage, pixels.stage_role, strict=True)) == {("pixels", "backbone")}
        and pixels["batch_size"].isna().all()
    )


def test_a_method_with_three_stages_has_all_three_in_the_frame():
    run = metrics_record("toy", method="toy", stages=("backbone", "projector", "cluster"))
    frame = results.collect([run], [])
    assert len(frame) == 3 * 3 and set(frame.method) == {"toy"}
    roles = dict(zip(frame.stage, frame.stage_role, strict=True))
    assert roles == {"backbone": "backbone", "projector": "intermediate", "cluster": "final"}
    got = frame[(frame.stage == "projector") & (frame.metric == "acc")]["mean"].item()
    assert got == run["stages"]["projector"]["acc"]


def test_the_frame_refuses_what_averaging_would_hide():
    with pytest.raises(ValueError, match="same seed"):
        results.collect([metrics_record(), metrics_record()], [])
    with pytest.raises(ValueError, match="reserved"):
        results.collect([metrics_record(BASELINE_VARIANT)], [])
    with pytest.raises(ValueError, match="disagree on method or stages"):
        results.collect([metrics_record(), metrics_record(seed=1, stages=("backbone", "projector"))], [])
    with pytest.raises(ResultsError, match="digits-bs128-cd-s42: not a metrics file"):
        results.collect([{k: v for k, v in metrics_record().items() if k != "method"}], [])
    with pytest.raises(ValueError, match="given twice"):
        results.collect([], [BASELINE, BASELINE])


def test_the_references_line_up_with_our_rows():
    paper = published.paper_rows(published.load_paper_results())
    cd128 = paper[(paper.method == "CD-128") & (paper.dataset == "cifar10") & (paper.stage_role == "final")]
    assert set(cd128.variant) == {"cd"} and set(cd128.batch_size) == {128} and set(cd128.stage) == {"feature"}
    assert set(paper[paper.method == "K-means"].variant) == {BASELINE_VARIANT}
    authors = published.authors_rows(published.load_repo_variability())
    finals = authors[authors.stage_role == "final"]
    assert dict(zip(finals.variant, finals.stage, strict=True)) == {"no_head": "projector", "cd": "feature"}
    assert set(authors.method) == {"cd"} and set(authors.batch_size) == {128}


# --------------------------------------------------------------------------- a profile


@pytest.fixture
def profile(tmp_path):
    """The repository's params with a SimCLR variant, results written for three runs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["results_dir"] = str(tmp_path / "results")
    params["variants"]["simclr"] = {"method": "simclr", "schedule": False}
    params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42} for v in ("cd", "no_head", "simclr")
    ]
    paths = ProfilePaths.from_params(params)
    for run, stages in zip(
        params["runs"], (("backbone", "feature"), ("backbone", "projector"), ("backbone", "projector")), strict=True
    ):
        method = params["variants"][run["variant"]].get("method", "cd")
        record = stamped(params, metrics_record(run["variant"], method=method, stages=stages))
        results.write_metrics(paths.metrics(record["run_id"]), record)
    write_json(paths.baseline("digits"), BASELINE)
    return params, paths


def test_a_profile_loads_its_runs_baselines_titles_and_variants(profile):
    params, _ = profile
    loaded = ProfileResults.load(params)
    assert [m["variant"] for m in loaded.metrics] == ["cd", "no_head", "simclr"]
    assert loaded.baselines == [BASELINE] and loaded.titles["digits"] == "Digits"
    assert loaded.profile == params["profile"]
    cd, no_head, simclr = (loaded.variants[v] for v in ("cd", "no_head", "simclr"))
    assert (cd.method, cd.label, cd.sigmoid_heads) == ("cd", "CD", "f")
    assert cd.switches["entropy"] is True and cd.switches["views"] == 2 and cd.switches["schedule"] is True
    assert no_head.switches["head"] is False and no_head.sigmoid_heads is None
    assert (simclr.method, simclr.label, simclr.sigmoid_heads) == ("simclr", "SimCLR", None)
    assert simclr.switches == {"views": 2, "schedule": False, "grad_clip": True}
    assert set(loaded.frame.method) == {"cd", "simclr", ""}


def test_a_profile_with_a_bad_file_fails_in_one_line_naming_it(profile, tmp_path, capsys):
    params, paths = profile
    bad = paths.metrics("digits-bs128-no_head-s42")
    saved = json.loads(bad.read_text())
    old_format = copy.deepcopy(saved)
    old_format.update(backbone=old_format.pop("stages")["backbone"], feature=scores(0.2), feature_stage="projector")
    bad.write_text(json.dumps(old_format))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    assert main(["tables", "--params", str(params_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "cdrepro evaluate --run digits-bs128-no_head-s42" in err


def tables_error(params: dict, tmp_path: Path, capsys, command: str = "tables") -> str:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    assert main([command, "--params", str(params_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize("command", ["tables", "methods-table", "figures"])
def test_metrics_made_under_other_settings_are_refused_naming_the_run(profile, tmp_path, capsys, command):
    """After a change of params, a table printing the old model's numbers would be wrong: the
    tables, the methods table and the figures refuse the run's metrics."""
    params, paths = profile
    params["variants"]["no_head"]["grad_clip"] = False  # only this run's settings change
    err = tables_error(params, tmp_path, capsys, command)
    assert "run digits-bs128-no_head-s42's metrics were made with other settings" in err
    assert "cdrepro train --run digits-bs128-no_head-s42" in err and "cd-s42" not in err


def test_metrics_made_on_other_data_are_refused_naming_the_run(profile, tmp_path, capsys):
    params, paths = profile
    write_json(paths.prepared_meta("digits"), {"sha256": "f" * 64})  # digits prepared anew, other bytes
    err = tables_error(params, tmp_path, capsys)
    assert "run digits-bs128-cd-s42's metrics were made with other data" in err and "f" * 16 in err


def test_metrics_from_before_digests_are_named_together_with_one_fix(profile, tmp_path, capsys):
    params, paths = profile
    for rid in ("digits-bs128-cd-s42", "digits-bs128-simclr-s42"):
        record = json.loads(paths.metrics(rid).read_text())
        del record["settings_digest"], record["data_digest"]
        results.write_metrics(paths.metrics(rid), record)
    err = tables_error(params, tmp_path, capsys)
    assert "of 2 run(s)" in err and "digits-bs128-cd-s42, digits-bs128-simclr-s42" in err
    assert "snakemake --forcerun evaluate" in err


# --------------------------------------------------------------------------- targets


def _write_fake_metrics(params: dict, target: str | None) -> None:
    """metrics.json of every run of ``target`` (a CD-shaped record whatever the method: loading
    does not look further) and the baselines."""
    paths = ProfilePaths.from_params(params)
    for run in rs.runs_of(params, target):
        method = results.variant_info(params, run.variant).method
        record = stamped(
            params, metrics_record(run.variant, run.seed, method, batch_size=run.batch_size, dataset=run.dataset)
        )
        results.write_metrics(paths.metrics(record["run_id"]), record)
    for dataset in {run.dataset for run in rs.runs_of(params, target)}:
        write_json(paths.baseline(dataset), {**BASELINE, "dataset": dataset})


def test_the_target_picks_the_runs_and_reads_only_their_files(tmp_path):
    """The paper profile: its 20 runs for the tables, CD at 128 beside every other method and CC's
    recipe for the methods table, every method at K = 20 and K = 100 for many clusters, every
    method balanced and long-tailed for the long tail; a run of another target need not have
    been evaluated."""
    params = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())
    params["results_dir"] = str(tmp_path / "results")
    _write_fake_metrics(params, results.COMPARISON_TARGET)
    loaded = ProfileResults.load(params, target=results.COMPARISON_TARGET)
    got = {(m["dataset"], m["batch_size"], m["variant"]) for m in loaded.metrics}
    assert len(got) == 14 and ("stl10", 128, "cd") in got and ("stl10", 256, "cd") not in got
    assert {v for _, b, v in got if b == 256} == {"cc_published"} and ("cifar10", 256, "cc_published") in got
    assert {m["method"] for m in loaded.metrics} == {"cd", "simclr", "cc", "cld", "cdc"}
    assert [b["dataset"] for b in loaded.baselines] == ["cifar10", "cifar100_20", "imagenet10", "stl10"]
    with pytest.raises(FileNotFoundError, match="cdrepro evaluate --run cifar10-bs128-cd-s42"):
        ProfileResults.load(params, target=results.TABLES_TARGET)  # not evaluated yet
    _write_fake_metrics(params, results.TABLES_TARGET)
    tables_runs = ProfileResults.load(params, target=results.TABLES_TARGET).metrics
    assert len(tables_runs) == 20 and {m["method"] for m in tables_runs} == {"cd"}
    _write_fake_metrics(params, results.CLUSTERS_TARGET)
    clusters = ProfileResults.load(params, target=results.CLUSTERS_TARGET).metrics
    assert {(m["dataset"], m["method"]) for m in clusters} == {
        (d, method) for d in ("cifar100_20", "cifar100") for method in ("cd", "simclr", "cc", "cld", "cdc")
    }
    _write_fake_metrics(params, results.LONG_TAIL_TARGET)
    long_tail = ProfileResults.load(params, target=results.LONG_TAIL_TARGET).metrics
    assert {(m["dataset"], m["method"]) for m in long_tail} == {
        (d, method)
        for d in ("cifar10_train", "cifar10_lt10", "cifar10_lt100")
        for method in ("cd", "simclr", "cc", "cld", "cdc")
    }
    assert len(ProfileResults.load(params).metrics) == 56  # every run


def test_the_comparison_target_is_every_run_where_no_run_is_tagged(embedded_params):
    assert results.comparison_target(embedded_params) == "compare_methods"
    assert results.comparison_target(embedded_params, results.CLUSTERS_TARGET) is None  # digits only
    assert len(rs.runs_of(embedded_params, results.comparison_target(embedded_params))) == 5
    for run in embedded_params["runs"]:
        run.pop("targets", None)
    assert results.comparison_target(embedded_params) is None


def test_a_profile_restricted_to_some_runs_keeps_their_baselines(profile):
    params, _ = profile
    loaded = ProfileResults.load(params)
    only = loaded.restricted(["digits-bs128-simclr-s42"])
    assert [m["variant"] for m in only.metrics] == ["simclr"] and only.baselines == loaded.baselines
    assert only.restricted([]).baselines == [] and only.variants == loaded.variants


def test_the_commands_read_their_targets_runs(profile, tmp_path, capsys):
    """`cdrepro tables` reads the reproduce_tables runs and `cdrepro methods-table` the
    compare_methods runs; neither needs the other's metrics."""
    params, paths = profile
    params["variants"]["cc"] = {"method": "cc"}
    params["runs"][2]["targets"] = ["compare_methods"]  # simclr: the methods table's only
    params["runs"][0]["targets"] = ["reproduce_tables", "compare_methods"]
    params["runs"].append(
        {"dataset": "digits", "batch_size": 128, "variant": "cc", "seed": 42, "targets": ["compare_methods"]}
    )  # not evaluated
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(FileNotFoundError):
        ProfileResults.load(params, target="compare_methods")
    assert main(["tables", "--params", str(params_file)]) == 0
    tables_csv = (paths.tables_dir() / "all.csv").read_text()
    assert "simclr" not in tables_csv and "no_head" in tables_csv
    params["runs"].pop()
    params_file.write_text(yaml.safe_dump(params))
    assert main(["methods-table", "--params", str(params_file)]) == 0
    out = capsys.readouterr().out.split()
    assert out[-3:] == [
        str(paths.tables_dir() / name) for name in ("methods.tex", "methods.csv", "methods_differences.csv")
    ]
    methods_csv = (paths.tables_dir() / "methods.csv").read_text()
    assert "simclr" in methods_csv and "no_head" not in methods_csv


# --------------------------------------------------------------------------- published numbers


def test_published_numbers_are_lined_up_with_our_methods_and_labelled_by_source():
    rows = published.published_rows(
        published.load_paper_results(), published.load_cc_results(), published.load_repo_variability()
    )
    cc = rows[(rows.method == "cc") & (rows.stage_role == "final")]
    assert set(cc.source) == {"cd_paper", "cc_paper"}
    own = cc[cc.source == "cc_paper"]
    assert set(own.batch_size) == {256} and set(own.stage) == {"cluster"} and set(own.variant) == {""}
    stl = own[own.dataset == "stl10"]
    assert dict(zip(stl.metric, stl["mean"], strict=True)) == {"nmi": 0.764, "ari": 0.726, "acc": 0.850}
    assert dict(zip(stl.metric, stl.confirmed, strict=True)) == {"nmi": True, "ari": False, "acc": True}
    assert stl.note.str.contains("unlabeled").all()
    assert own[own.dataset != "stl10"].confirmed.all()
    # The two sources disagree on STL-10 and CIFAR-100-20 only: both rows say so there.
    disagree = cc[cc.note.str.contains("disagree")]
    assert set(disagree.dataset) == {"stl10", "cifar100_20"} and set(disagree.source) == {"cd_paper", "cc_paper"}
    assert not rows[rows.stage_role == "backbone"].note.str.contains("disagree").any()
    # CD's paper: CD-128/256 are CD's variant cd at that batch size; K-means is the pixel baseline.
    cd = rows[(rows.source == "cd_paper") & (rows.method == "cd")]
    assert set(zip(cd.variant, cd.batch_size, strict=True)) == {("cd", 128), ("cd", 256)}
    assert set(rows[rows.paper_column == "K-means"].variant) == {BASELINE_VARIANT}
    assert not rows.paper_column.isin(["AE", "JULE", "PICA"]).any()  # methods we do not train
    simclr = rows[rows.method == "simclr"]
    assert set(simclr.source) == {"authors_repo"} and set(simclr.paper_column) == {"no_head"}
    assert set(rows.method) == {"cd", "cc", "simclr", ""}


# --------------------------------------------------------------------------- held-out accuracies (issue 22)


def with_held_out(record: dict, knn: float = 0.9, linear: float = 0.8) -> dict:
    """``record`` as evaluation writes it since issue 22: kNN on every stage, the probe on h."""
    stages = {name: scores | {"knn": knn} for name, scores in record["stages"].items()}
    stages["backbone"]["linear"] = linear
    return record | {"stages": stages, "held_out": {"split": {"kind": "stratified"}, "knn": {"k": 200}}}


def test_held_out_accuracies_become_frame_rows_and_older_records_still_read(tmp_path):
    new = with_held_out(metrics_record("cd"))
    old = metrics_record("no_head", stages=("backbone", "projector"))  # written before issue 22
    path = tmp_path / "runs" / new["run_id"] / "metrics.json"
    results.write_metrics(path, new)
    assert results.read_metrics(path) == new
    frame = results.collect([new, old], [BASELINE])
    held = frame[frame.metric.isin(["knn", "linear"])]
    assert set(zip(held.variant, held.stage, held.metric, strict=True)) == {
        ("cd", "backbone", "knn"),
        ("cd", "feature", "knn"),
        ("cd", "backbone", "linear"),
    }
    assert list(frame[(frame.variant == "cd") & (frame.stage == "backbone")].metric) == [*SCORES, "knn", "linear"]
    assert set(frame[frame.variant == "no_head"].metric) == set(SCORES)  # nothing invented for the old one


def test_a_held_out_accuracy_some_seeds_lack_is_left_out_not_averaged_over_fewer():
    runs = [with_held_out(metrics_record(seed=42)), metrics_record(seed=43)]
    assert set(results.collect(runs, []).metric) == set(SCORES)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: with_held_out(r, knn=1.5), "stages.backbone.knn must be an accuracy from 0 to 1"),
        (lambda r: with_held_out(r, linear="high"), "stages.backbone.linear must be an accuracy"),
        (lambda r: r | {"held_out": 3}, "'held_out' must be an object"),
    ],
)
def test_bad_held_out_values_are_named(tmp_path, change, says):
    path = tmp_path / "runs" / "digits-bs128-cd-s42" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(change(metrics_record())))
    with pytest.raises(ResultsError, match=says):
        results.read_metrics(path)


def test_clds_published_knn_comes_with_its_setting():
    rows = published.published_rows(
        published.load_paper_results(),
        published.load_cc_results(),
        published.load_repo_variability(),
        published.load_knn_results(),
    )
    cld = rows[(rows.method == "cld") & (rows.dataset == "cifar10") & (rows.source == "cld_paper")]
    npid = cld[cld.paper_column == "NPID+CLD"].iloc[0]
    assert (npid.metric, npid["mean"], npid.stage_role, npid.setting) == ("knn", 0.867, "final", "k = 200, T = 0.1")
    assert "projection" in npid.stage and "200 epochs" in npid.note and "ResNet-18" in npid.note
    assert set(rows[rows.method == "cld"].metric) == {"knn", "linear"}
