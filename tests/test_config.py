from pathlib import Path

import pytest
import yaml

from cdrepro.config import ParamsError, load_params, resolve_run, runs_of, validate_params
from cdrepro.runs import Run, parse_run_id, run_id, tracking_name

REPO = Path(__file__).resolve().parents[1]


def test_default_params_are_valid_and_list_the_paper_structure(embedded_params):
    validate_params(embedded_params)
    ids = [run_id(r) for r in runs_of(embedded_params)]
    assert "digits-bs128-cd-s42" in ids and "digits-bs256-cd-s42" in ids
    assert {r.variant for r in runs_of(embedded_params)} == {
        "cd", "no_ne", "no_bn", "no_ne_no_bn", "no_sched", "no_head", "single_view", "simclr", "cc", "cld", "cdc"}
    assert {r.variant for r in runs_of(embedded_params, "compare_methods")} == {"cd", "simclr", "cc", "cld", "cdc"}


def test_run_identity_round_trips():
    run = Run("cifar100_20", 256, "no_ne_no_bn", 7)
    assert run_id(run) == "cifar100_20-bs256-no_ne_no_bn-s7"
    assert parse_run_id(run_id(run)) == run
    assert tracking_name(run) == "cifar100_20/bs256/no_ne_no_bn/seed7"


@pytest.mark.parametrize("mutate, key", [
    (lambda p: p["train"].update(learning_rate=1), "train: unknown key"),
    (lambda p: p["train"].update(epochs="ten"), "train.epochs"),
    (lambda p: p["train"].update(lr=-0.1), "train.lr"),
    (lambda p: p["model"].update(backbone="vgg16"), "model.backbone"),
    (lambda p: p["runs"][2].update(variant="no_such"), "runs[2].variant"),
    (lambda p: p["runs"][0].update(dataset="mnist"), "runs[0].dataset"),
    (lambda p: p["runs"][1].update(batch_size=1), "runs[1].batch_size"),
    (lambda p: p["variants"]["no_head"].update(entropy=True), "variants.no_head"),
    (lambda p: p["variants"]["cd"].update(views=3), "variants.cd.views"),
    (lambda p: p["datasets"].update(mine={"source": "folder", "color_strength": 1, "blur": False}), "datasets.mine.path"),
    (lambda p: p["runs"].append(dict(p["runs"][0])), "duplicate"),
    (lambda p: p["train"].update(gpus_per_run=3), "runs[0].batch_size: 128 does not split evenly"),
    (lambda p: p.pop("runs"), "'runs' is a required property"),
    (lambda p: p["variants"]["cd"].update(method="nope"), "variants.cd.method: unknown method 'nope'"),
    (lambda p: p["methods"].update(nope={}), "methods.nope: unknown method 'nope'"),
    (lambda p: p["methods"]["cd"].update(feature_temperature=0), "methods.cd.feature_temperature: 0 is less"),
    (lambda p: p["methods"]["cd"].update(tau=1.0), "methods.cd.tau: 'tau' is not an option of method cd"),
    (lambda p: p["variants"]["cd"].update(head="yes"), "variants.cd.head: 'yes' is not of type 'boolean'"),
    # A CD switch on a variant of another method names both.
    (lambda p: p["variants"].update(sim={"method": "simclr", "entropy": False}),
     "variants.sim.entropy: 'entropy' is an option of cd, not of simclr"),
])
def test_bad_params_name_the_key(embedded_params, mutate, key):
    mutate(embedded_params)
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params)
    assert key in str(excinfo.value)


def test_load_params_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_resolve_run_applies_switches_and_batch_size_dims(embedded_params):
    run = Run("digits", 256, "no_sched", 42)
    s = resolve_run(embedded_params, run)
    assert (s.schedule, s.grad_clip, s.options["entropy"], s.options["head"]) == (False, False, True, True)
    assert s.hidden_dim == s.options["feature_num"] == 256
    assert s.rep_dim == 8 * embedded_params["model"]["backbone_width"]
    other = resolve_run(embedded_params, Run("digits", 128, "no_sched", 42))
    assert s.digest() != other.digest()


def test_method_options_come_from_defaults_then_methods_then_the_variant(embedded_params):
    embedded_params["methods"]["cd"] = {"entropy_weight": 2}  # an int: stored as the float it means
    embedded_params["variants"]["half_ne"] = {"entropy_weight": 0.5}
    embedded_params["runs"].append({"dataset": "digits", "batch_size": 64, "variant": "half_ne", "seed": 1})
    validate_params(embedded_params)
    cd = resolve_run(embedded_params, Run("digits", 128, "cd", 42))
    half = resolve_run(embedded_params, Run("digits", 64, "half_ne", 1))
    assert cd.options["entropy_weight"] == 2.0 and isinstance(cd.options["entropy_weight"], float)
    assert cd.options["feature_temperature"] == 1.0  # the method's default
    assert half.options["entropy_weight"] == 0.5 and half.options["feature_num"] == 64
    assert (half.views, half.schedule, half.grad_clip) == (2, True, True)  # protocol defaults


@pytest.mark.parametrize(("variant", "digest"), [("cd", "783bbbe57fff7d1d"), ("no_head", "5a7ab7eea9598b58")])
def test_cd_settings_and_digests_are_those_of_runs_made_before_methods(variant, digest):
    """Flat settings without a ``method`` key, as before there were methods: the digests that
    key users' existing paper checkpoints (computed by the code before the method seam) stay."""
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    s = resolve_run(params, Run("stl10", 128, variant, 42))
    flat = s.to_dict()
    assert "method" not in flat and "options" not in flat
    assert {"entropy", "last_bn", "head", "feature_num", "feature_temperature", "entropy_weight"} <= set(flat)
    assert s.digest() == digest
    assert type(s).from_dict(flat) == s


def test_paper_profile_is_valid():
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    assert params["profile"] == "paper"


def test_batch_sizes_are_checked_against_prepared_datasets(embedded_params, tmp_path):
    import json

    from cdrepro.config import check_against_prepared, check_batch_sizes
    from cdrepro.runs import ProfilePaths

    embedded_params["results_dir"] = str(tmp_path)
    assert check_against_prepared(embedded_params) == []  # nothing prepared yet: train checks later
    meta = ProfilePaths.from_params(embedded_params).prepared_meta("digits")
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"n_images": 200}))
    with pytest.raises(ParamsError, match=r"runs\[1\]\.batch_size: 256 is larger than dataset 'digits' "
                                          r"\(200 images\); use a batch size of at most 200"):
        check_against_prepared(embedded_params, source="p.yaml")
    check_batch_sizes(embedded_params, "digits", 256)  # 256 images suffice for every run
    meta.write_text(json.dumps({"n_images": 1797}))
    assert check_against_prepared(embedded_params) == ["digits"]
    meta.write_text("{")
    with pytest.raises(ParamsError, match="cdrepro prepare --dataset digits"):
        check_against_prepared(embedded_params)
