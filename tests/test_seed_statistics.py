"""Tests of cdrepro.seed_statistics on hand-made numbers, checked against scipy."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from scipy import stats

from cdrepro import seed_statistics as ss

NMI = [0.812, 0.845, 0.829, 0.861]


def frame_of(
    groups: dict[tuple[str, str], dict[int, float]],
    dataset: str = "stl10",
    batch_size: int = 128,
    metric: str = "nmi",
    role: str = "final",
) -> pd.DataFrame:
    """A long frame (``results.collect``'s columns that matter here) of (method, variant) ->
    seed -> value."""
    rows = [
        {
            "source": "ours",
            "dataset": dataset,
            "batch_size": batch_size,
            "method": method,
            "variant": variant,
            "stage": f"{variant}_out",
            "stage_role": role,
            "metric": metric,
            "seeds": ";".join(map(str, sorted(values))),
            "values": ";".join(repr(values[s]) for s in sorted(values)),
        }
        for (method, variant), values in groups.items()
    ]
    return pd.DataFrame(rows)


def test_the_interval_of_a_mean_is_students_t_as_scipy_gives_it():
    interval = ss.mean_interval(NMI)
    low, high = stats.t.interval(0.95, df=len(NMI) - 1, loc=statistics.fmean(NMI), scale=stats.sem(NMI))
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert interval.mean == pytest.approx(statistics.fmean(NMI))
    assert interval.std == pytest.approx(statistics.stdev(NMI))
    assert interval.half_width == pytest.approx((high - low) / 2) and interval.n == 4
    # Student t, not the normal 1.96: with four seeds the interval is 1.6 times as wide.
    assert interval.half_width > 1.5 * 1.96 * stats.sem(NMI)
    assert interval.note == "" and interval.within_noise is False


def test_one_seed_has_no_interval_and_says_one_seed():
    interval = ss.mean_interval([0.7])
    assert interval.mean == 0.7 and interval.n == 1
    assert math.isnan(interval.low) and math.isnan(interval.high) and math.isnan(interval.std)
    assert interval.within_noise is None and interval.note == "one seed"
    assert ss.interval_note(0) == "no shared seed" and ss.interval_note(3) == ""


def test_identical_values_give_the_point_itself_not_nan():
    interval = ss.mean_interval([0.5, 0.5, 0.5])
    assert (interval.low, interval.high, interval.half_width) == (0.5, 0.5, 0.0)


def test_a_paired_difference_is_over_the_shared_seeds_only_and_is_scipys_paired_t():
    cd = {1: 0.61, 2: 0.64, 3: 0.60, 5: 0.66}
    simclr = {2: 0.58, 3: 0.59, 5: 0.61, 7: 0.99}  # seed 7 has no CD run: left out, not matched
    differences = ss.paired_differences(frame_of({("cd", "cd"): cd, ("simclr", "simclr"): simclr}), ["final"])
    (row,) = differences.to_dict("records")
    shared = [2, 3, 5]
    a, b = [cd[s] for s in shared], [simclr[s] for s in shared]
    test = stats.ttest_rel(a, b)
    low, high = test.confidence_interval(0.95)
    assert (row["method"], row["vs_method"], row["comparison"]) == ("cd", "simclr", "methods")
    assert row["seeds"] == "2;3;5" and row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert [float(v) for v in row["values"].split(";")] == pytest.approx([x - y for x, y in zip(a, b, strict=True)])
    assert row["within_noise"] == (low <= 0 <= high) and row["note"] == ""
    assert (row["stage"], row["vs_stage"]) == ("cd_out", "simclr_out")


def test_within_noise_is_whether_the_difference_interval_contains_zero():
    close = ss.paired_differences(
        frame_of({("cd", "cd"): {1: 0.60, 2: 0.62, 3: 0.61}, ("cc", "cc"): {1: 0.61, 2: 0.60, 3: 0.62}}), ["final"]
    ).iloc[0]
    apart = ss.paired_differences(
        frame_of({("cd", "cd"): {1: 0.70, 2: 0.72, 3: 0.71}, ("cc", "cc"): {1: 0.60, 2: 0.61, 3: 0.62}}), ["final"]
    ).iloc[0]
    assert close["ci_low"] < 0 < close["ci_high"] and bool(close["within_noise"]) is True
    assert apart["ci_low"] > 0 and bool(apart["within_noise"]) is False


def test_one_shared_seed_gives_no_interval_and_no_shared_seed_no_difference():
    one = ss.paired_differences(
        frame_of({("cd", "cd"): {1: 0.6, 2: 0.7}, ("cc", "cc"): {2: 0.5, 3: 0.4}}), ["final"]
    ).iloc[0]
    assert one["n_seeds"] == 1 and one["mean"] == pytest.approx(0.2) and one["note"] == "one seed"
    assert pd.isna(one["ci_low"]) and pd.isna(one["within_noise"])
    none = ss.paired_differences(frame_of({("cd", "cd"): {1: 0.6}, ("cc", "cc"): {2: 0.5}}), ["final"]).iloc[0]
    assert none["n_seeds"] == 0 and pd.isna(none["mean"]) and none["note"] == "no shared seed"


def test_pairs_are_every_two_methods_and_each_ablation_against_its_full_model():
    groups = [("cd", "no_ne"), ("cc", "cc"), ("cd", "cd"), ("cd", "no_bn"), ("simclr", "simclr")]
    assert ss.pairs(groups) == [
        (("cd", "no_ne"), ("cd", "cd"), "ablation"),
        (("cd", "no_bn"), ("cd", "cd"), "ablation"),
        (("cd", "cd"), ("simclr", "simclr"), "methods"),
        (("cd", "cd"), ("cc", "cc"), "methods"),
        (("simclr", "simclr"), ("cc", "cc"), "methods"),
    ]  # the registry's order: CD, SimCLR, CC
    # No full model (no variant named "cc" at this batch size): each variant stands for CC.
    assert ss.pairs([("cc", "cc_published"), ("cd", "cd")]) == [(("cd", "cd"), ("cc", "cc_published"), "methods")]
    assert ss.pairs([("cd", "no_ne"), ("cd", "no_bn")]) == []  # two ablations without their full model


def test_only_rows_of_one_dataset_and_batch_size_are_paired():
    frame = pd.concat(
        [
            frame_of({("cd", "cd"): {1: 0.6, 2: 0.7}}, batch_size=128),
            frame_of({("cc", "cc"): {1: 0.5, 2: 0.6}}, batch_size=256),
            frame_of({("simclr", "simclr"): {1: 0.5, 2: 0.6}}, dataset="digits"),
        ]
    )
    assert ss.paired_differences(frame, ["final"]).empty
    backbone = frame_of({("cd", "cd"): {1: 0.6, 2: 0.7}, ("cc", "cc"): {1: 0.5, 2: 0.6}}, role="backbone")
    both = pd.concat([backbone, frame_of({("cd", "cd"): {1: 0.6, 2: 0.7}, ("cc", "cc"): {1: 0.5, 2: 0.6}})])
    assert ss.paired_differences(both, ["final"])["stage_role"].tolist() == ["final"]
    assert list(ss.paired_differences(both, ["backbone", "final"]).columns) == ss.DIFFERENCE_COLUMNS


def test_seeds_and_values_that_do_not_line_up_are_refused():
    with pytest.raises(ValueError, match="2 seeds"):
        ss.by_seed("1;2", "0.5")


def test_with_intervals_adds_each_means_interval_after_its_std():
    frame = pd.DataFrame(
        {
            "mean": [statistics.fmean(NMI), 0.7],
            "std": [statistics.stdev(NMI), math.nan],
            "values": [";".join(map(repr, NMI)), "0.7"],
        }
    )
    out = ss.with_intervals(frame)
    assert list(out.columns) == ["mean", "std", "ci_low", "ci_high", "values"]
    low, high = stats.t.interval(0.95, df=len(NMI) - 1, loc=statistics.fmean(NMI), scale=stats.sem(NMI))
    assert (out.ci_low[0], out.ci_high[0]) == (pytest.approx(low), pytest.approx(high))
    assert out.ci_low.isna()[1] and out.ci_high.isna()[1]  # one seed: no interval
