"""Statistics at 1 to 10 seeds (issue 27), each checked against scipy, rliable or a small
case worked by hand; then the report, claims and plan that show them (no training)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.render.report import build_report, render_csv, render_json, render_markdown
from harness.stats import resampling as rs
from harness.stats.claims import Claim, check, seeds_per_row
from harness.stats.intervals import holm, paired_t_power, seeds_needed
from harness.tables.paper import TABLE1
from tests.test_stats import ACCURACY, FakeStore, _record, _table1_records

X = np.array([0.91, 0.93, 0.92, 0.95, 0.90, 0.94, 0.89])
Y = np.array([0.90, 0.92, 0.93, 0.91, 0.90, 0.92, 0.88])


def _rliable_metrics():
    try:
        from rliable import metrics
    except ImportError as exc:  # optional: the `test` extra installs it
        pytest.skip(f"rliable not importable ({exc})")
    return metrics


def _percentile_bootstrap(data: tuple, statistic, **kwargs) -> tuple[float, float]:
    """scipy's percentile bootstrap with many resamples: the reference interval."""
    ci = sps.bootstrap(data, statistic, method="percentile", n_resamples=50_000,
                       rng=np.random.default_rng(7), **kwargs).confidence_interval  # fmt: skip
    return ci.low, ci.high


def test_bca_interval_is_scipys_paired_bca_and_says_why_below_3_seeds():
    d = X - Y
    ci = sps.bootstrap((X, Y), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True,
                       method="BCa", n_resamples=rs.RESAMPLES,
                       rng=np.random.default_rng(rs._SEED)).confidence_interval  # fmt: skip
    assert rs.bca_interval(list(d)) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(b) for b in rs.bca_interval([0.1, 0.2]))
    assert rs.bca_interval([0.3, 0.3, 0.3]) == (0.3, 0.3)  # nothing to resample
    assert rs.no_interval_reason(1) == "one seed has no spread to resample"
    assert "2 seeds" in rs.no_interval_reason(2) and rs.no_interval_reason(3) == ""


def test_sign_flip_p_by_hand_and_by_enumeration():
    # sums under the 8 sign patterns of (0.01, 0.03, -0.005): two reach the observed 0.035
    assert rs.sign_flip_p([0.01, 0.03, -0.005]) == pytest.approx(2 * 2 / 8)
    assert rs.sign_flip_p([1.0, 2.0]) == pytest.approx(0.5) == rs.smallest_sign_flip_p(2)
    assert rs.sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(0.25) == rs.smallest_sign_flip_p(3)
    assert math.isnan(rs.sign_flip_p([1.0]))
    d = X - Y  # 7 seeds: all 128 patterns
    means = [np.mean(np.multiply(d, s)) for s in itertools.product((1, -1), repeat=len(d))]
    observed = d.mean()
    tail = min(
        np.mean(np.array(means) >= observed - 1e-12), np.mean(np.array(means) <= observed + 1e-12)
    )
    assert rs.sign_flip_p(list(d)) == pytest.approx(min(1.0, 2 * tail))


def test_probability_of_improvement_is_rliables():
    # by hand: x = 1, 2, 3 against three 2s: 0 + 3 halves + 3 wins over 9 pairs
    assert rs.probability_of_improvement([1, 2, 3], [2, 2, 2]).value == pytest.approx(0.5)
    assert rs.probability_of_improvement([3, 4], [1, 2]).value == 1.0
    assert rs.probability_of_improvement([3, 4], [1, 2], higher_is_better=False).value == 0.0
    got = rs.probability_of_improvement(X, Y)

    def improvement(x, y, axis):  # Mann-Whitney: mean over pairs of 1[x > y] + 1/2 1[x = y]
        x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
        return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))

    # each row's runs resampled independently, as rliable's StratifiedIndependentBootstrap
    low, high = _percentile_bootstrap((X, Y), improvement, vectorized=True)
    assert (got.low, got.high) == pytest.approx((low, high), abs=0.03)
    assert math.isnan(rs.probability_of_improvement([1, 2], [0, 1]).low)  # 2 runs: no interval
    metrics = _rliable_metrics()
    assert got.value == pytest.approx(metrics.probability_of_improvement(X[:, None], Y[:, None]))


def test_interquartile_mean_is_rliables_from_five_seeds():
    assert rs.interquartile_mean(range(1, 9)).value == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert math.isnan(rs.interquartile_mean([1, 2, 3, 4]).value)
    got = rs.interquartile_mean(X)
    assert got.value == pytest.approx(sps.trim_mean(X, 0.25))
    low, high = _percentile_bootstrap((X,), lambda x, axis: sps.trim_mean(x, 0.25, axis=axis))
    assert (got.low, got.high) == pytest.approx((low, high), abs=0.002)
    metrics = _rliable_metrics()
    assert got.value == pytest.approx(metrics.aggregate_iqm(X[:, None]))


def test_expected_best_of_n_by_hand():
    # from {1, 2}: the best of two draws is 1 only when both are 1 (1/4)
    assert rs.expected_best([1, 2], 2) == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert rs.expected_best([1, 2], 2, higher_is_better=False) == pytest.approx(1.25)
    assert rs.expected_best([3, 1, 2, 2], 1) == pytest.approx(2.0)  # one run: the mean
    # ties: {1, 1, 2}, three draws: the best is 1 with probability (2/3)^3
    assert rs.expected_best([1, 1, 2], 3) == pytest.approx(8 / 27 + 2 * 19 / 27)
    assert rs.expected_best(X, 200) == pytest.approx(X.max())


def test_effect_size_and_seeds_needed_match_the_textbook():
    assert rs.cohen_dz([1.0, 2.0, 3.0]) == pytest.approx(2.0)  # mean 2, sd 1
    assert math.isnan(rs.cohen_dz([1.0])) and math.isnan(rs.cohen_dz([2.0, 2.0]))

    def with_effect(d: float) -> list[float]:  # two differences with mean d and sd 1
        return [d + 1 / math.sqrt(2), d - 1 / math.sqrt(2)]

    # two-sided paired t, alpha 0.05, 80% power (G*Power): d_z 0.5 -> 34, 0.8 -> 15, 1 -> 10
    assert [seeds_needed(with_effect(d)) for d in (0.5, 0.8, 1.0)] == [34, 15, 10]
    assert seeds_needed(with_effect(0.01)) == math.inf  # more than MAX_SEEDS
    assert math.isnan(seeds_needed([0.5, -0.5])) and math.isnan(seeds_needed([1.0]))
    assert seeds_needed(with_effect(1.3), target=0.3) == 10  # against a threshold
    for n in (3, 8, 30):  # the power itself: noncentral t, as statsmodels computes it
        try:
            from statsmodels.stats.power import TTestPower
        except ImportError:
            pytest.skip("statsmodels (installed with rliable) not importable")
        assert paired_t_power(0.7, n) == pytest.approx(TTestPower().power(0.7, n, 0.05))


def test_report_columns_equal_the_statistics_of_the_seeds():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=3)))
    f = report.frame.set_index("variant")
    row, base = ACCURACY["mnist.fp_max_s4"][:3], ACCURACY["mnist.baseline"][:3]
    got = f.loc["mnist.fp_max_s4"]
    c = rs.compare(row, base, True)
    assert (got["accuracy_boot_low"], got["accuracy_boot_high"]) == pytest.approx(
        (c.boot_low, c.boot_high)
    )
    assert got["accuracy_p_improve"] == pytest.approx(c.p_improve.value)
    assert got["accuracy_dz"] == pytest.approx(c.dz)
    assert got["accuracy_seeds_needed"] == c.seeds_needed
    assert got["accuracy_expected_max"] == pytest.approx(rs.expected_best(row, 2))
    others = [v for v in ACCURACY if v != "mnist.baseline"]
    raw = [rs.sign_flip_p(list(np.subtract(ACCURACY[v][:3], base))) for v in others]
    assert list(f.loc[others, "accuracy_perm_p"]) == pytest.approx(holm(raw))
    # times improve downward: P(improvement) of the 20x slower top-k row is 0
    assert f.loc["mnist.topk_s2", "train_time_s_p_improve"] == 0.0
    assert "accuracy_iqm" not in f  # 3 seeds: nothing to trim
    header = render_csv(report).splitlines()[0].split(",")
    for name in ("boot_low", "boot_high", "perm_p", "p_improve", "expected_max", "seeds_needed"):
        assert f"accuracy_{name}" in header
    rows = json.loads(render_json(report))["rows"]
    assert rows[1]["accuracy_seeds_needed"] == f.iloc[1]["accuracy_seeds_needed"]

    markdown = render_markdown(report)
    assert "`--stats t` (the default)" in markdown and "nan" not in markdown.lower()
    assert "## Against the baseline" in markdown and "## Best of 2, read honestly" in markdown
    assert "smallest sign-flip p at n = 3: 0.25" in markdown


def test_stats_choose_the_main_cells_and_the_mark():
    records = FakeStore(_table1_records(seeds=4))
    t, boot, perm = (build_report(TABLE1, "paper", records, stats=s) for s in rs.STATS)
    line = {r.meta["stats"]: next(x for x in render_markdown(r).splitlines()
                                  if x.startswith("| Feature pooling (spatial pooling) 50%"))
            for r in (t, boot, perm)}  # fmt: skip
    f = boot.frame.set_index("variant").loc["mnist.fp_max_s2"]
    assert (
        f"[{f['accuracy_boot_mean_low']:.4f}, {f['accuracy_boot_mean_high']:.4f}] †"
        in line["bootstrap"]
    )
    assert "± " in line["t"] and "†" in line["t"]
    assert "†" not in line["permutation"].split("|")[2]  # 4 seeds: the smallest p is 0.125
    assert "`--stats bootstrap` (default `t`)" in render_markdown(boot)
    with pytest.raises(Exception, match="unknown --stats"):
        build_report(TABLE1, "paper", records, stats="bayes")


def test_one_and_two_seeds_say_why_and_leave_no_nan():
    one = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=1)))
    assert not any(c.endswith(("_boot_low", "_perm_p", "_expected_max")) for c in one.frame)
    assert "Statistics shown" not in render_markdown(one)  # single-seed reports unchanged
    two = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=2)))
    assert two.frame["accuracy_boot_low"].isna().all()
    markdown = render_markdown(two)
    assert "no interval at n = 2: 2 seeds" in markdown and "nan" not in markdown.lower()
    assert "smallest sign-flip p at n = 2: 0.5" in markdown


def test_inconclusive_claims_say_how_many_seeds_would_decide_them():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=3)))

    def verdict(rows, kind="greater", columns=("accuracy",), **band):
        return check(
            Claim("c", "s", kind, rows, columns, **band), report.measured, (None,), "paper"
        )

    close = verdict(("mnist.conv_s2", "mnist.baseline"))
    diffs = list(np.subtract(ACCURACY["mnist.conv_s2"][:3], ACCURACY["mnist.baseline"][:3]))
    assert close.verdict == "inconclusive" and close.seeds_needed == seeds_needed(diffs)
    assert close.verdict_text().startswith(
        f"inconclusive at n=3; about {seeds_needed(diffs):.0f} seeds would decide it"
    )
    assert close.as_dict()["seeds_needed"] == close.seeds_needed
    assert math.isnan(verdict(("mnist.fp_max_s2", "mnist.baseline")).seeds_needed)  # decided
    # a ratio is decided on the logs of the per-seed ratios, against the log of the edge
    times = {
        (None, "a"): {"t": {0: 2.0, 1: 3.0, 2: 2.5}},
        (None, "b"): {"t": {0: 1.0, 1: 1.0, 2: 1.0}},
    }
    ratio = check(Claim("c", "s", "ratio", ("a", "b"), ("t",), low=2.2, high=10.0), times,
                  (None,), "paper")  # fmt: skip
    logs = [math.log(r) for r in (2.0, 3.0, 2.5)]
    assert ratio.verdict == "inconclusive"
    assert ratio.seeds_needed == seeds_needed(logs, target=math.log(2.2))
    assert seeds_per_row([close]) == {
        "mnist.conv_s2": int(close.seeds_needed),
        "mnist.baseline": int(close.seeds_needed),
    }
    smoke = build_report(TABLE1, "smoke", FakeStore(_table1_records("smoke", seeds=3)))
    undecided = [c for c in smoke.checks if c.on_the_numbers == "inconclusive"]
    assert all("seeds would decide it" in c.verdict_text() for c in undecided)


def test_five_seeds_add_the_interquartile_mean():
    offsets = [0.004, -0.002, 0.001, 0.0, -0.003]
    records = [
        _record(TABLE1, v, "paper", seed, {"accuracy": ACCURACY[v][0] + offsets[seed]})
        for v in ACCURACY for seed in range(5)
    ]  # fmt: skip
    report = build_report(TABLE1, "paper", FakeStore(records))
    f = report.frame.set_index("variant")
    values = [ACCURACY["mnist.baseline"][0] + o for o in offsets]
    q = rs.interquartile_mean(values)
    got = f.loc["mnist.baseline", ["accuracy_iqm", "accuracy_iqm_low", "accuracy_iqm_high"]]
    assert list(got) == pytest.approx([q.value, q.low, q.high])
    assert q.value == pytest.approx(np.mean(sorted(values)[1:4]))  # 5 seeds: 1 cut each end
    assert "IQM [95% CI]" in render_markdown(report)


def test_intervals_match_rliables_library():
    """rliable's own bootstrap, where it imports (its `arch` dependency predates pandas 3)."""
    try:
        from rliable import library, metrics
    except Exception as exc:  # ImportError, or arch failing at import under pandas 3
        pytest.skip(f"rliable.library not importable here ({type(exc).__name__}: {exc})")
    np.random.seed(0)  # rliable draws from numpy's global generator
    _, ci = library.get_interval_estimates(
        {"x": X[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=20_000
    )
    got = rs.interquartile_mean(X)
    assert (got.low, got.high) == pytest.approx(tuple(ci["x"][:, 0]), abs=0.002)
    _, ci = library.get_interval_estimates(
        {"xy": [X[:, None], Y[:, None]]},
        lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
        reps=5_000,
    )
    got = rs.probability_of_improvement(X, Y)
    assert (got.low, got.high) == pytest.approx(tuple(ci["xy"][:, 0]), abs=0.03)
