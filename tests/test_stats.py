"""Statistics over seeds and the paper's claims, on synthetic records (no training)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.render.report import (
    build_report,
    cell_config,
    cell_key,
    render_csv,
    render_json,
    render_latex,
    render_markdown,
)
from harness.stats.claims import Claim, check
from harness.stats.intervals import holm, interval, paired, select
from harness.tables.paper import TABLE1, TABLE4

# accuracy per variant and seed, built so that the paired tests have known answers
ACCURACY = {
    "mnist.baseline": [0.950, 0.960, 0.955, 0.958],
    "mnist.fp_max_s2": [0.980, 0.985, 0.981, 0.987],  # clearly better, every seed
    "mnist.fp_max_s4": [0.951, 0.959, 0.957, 0.956],  # indistinguishable
    "mnist.topk_s2": [0.900, 0.905, 0.898, 0.903],  # clearly worse
    "mnist.topk_s4": [0.950, 0.961, 0.954, 0.959],
    "mnist.conv_s2": [0.949, 0.962, 0.950, 0.960],
    "mnist.conv_s4": [0.953, 0.958, 0.952, 0.957],
}


class FakeStore:
    """What build_report reads from a RunStore: records of a table and a root folder."""

    def __init__(self, records: list[dict]) -> None:
        self.root = Path("/nonexistent")
        self._records = records

    def records(self, table: str, profile: str | None = None):
        return (r for r in self._records if r["config"]["table"] == table
                and profile in (None, r["config"]["profile"]))  # fmt: skip


def _record(spec, variant, profile, seed, metrics, sigma=None):
    config = cell_config(spec, variant, profile, seed, sigma)
    return {
        "config": config, "cell_key": cell_key(config), "started_at": f"2026-01-01T00:00:{seed:02d}",
        "metrics": metrics, "data": "synthetic", "notes": [], "wall_s": 1.0,
        "env": {"device_name": "cpu", "torch": "x", "git_commit": "abc"},
    }  # fmt: skip


def _table1_records(profile="paper", seeds=4):
    records = []
    for variant, accuracies in ACCURACY.items():
        for seed in range(seeds):
            slow = 20.0 if "topk" in variant else 1.0
            metrics = {"accuracy": accuracies[seed], "train_time_s": slow * (1 + 0.01 * seed),
                       "test_time_s": 0.1, "params": 1000, "params_M_paper_conv": 0.001,
                       "flops": 5000, "flops_paper_conv": 2000}  # fmt: skip
            records.append(_record(TABLE1, variant, profile, seed, metrics))
    return records


def test_interval_matches_scipy():
    x = [0.91, 0.93, 0.92, 0.95, 0.90]
    got = interval(x)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (got.mean, got.std, got.low, got.high, got.n) == pytest.approx(
        (np.mean(x), np.std(x, ddof=1), low, high, 5)
    )
    assert math.isnan(interval([0.9]).low) and interval([]).n == 0


def test_paired_matches_scipy_ttest_rel():
    row = {0: 0.98, 1: 0.97, 2: 0.99, 3: 0.96, 4: 0.5}
    base = {0: 0.95, 1: 0.96, 2: 0.95, 3: 0.97}  # seed 4 unshared: left out
    got = paired(row, base)
    a, b = [0.98, 0.97, 0.99, 0.96], [0.95, 0.96, 0.95, 0.97]
    assert got.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert got.delta.mean == pytest.approx(np.mean(np.subtract(a, b))) and got.delta.n == 4
    assert got.win_rate == 0.75
    assert paired(row, base, higher_is_better=False).win_rate == 0.25


def test_holm_on_a_known_case():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # capped at 1 and monotone
    adjusted = holm([0.01, math.nan, 0.02])  # NaN: not tested, not counted in the family
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.02)


def test_select_rules():
    values = {3: 0.5, 0: 0.9, 1: 0.7, 2: 0.6}
    assert select(values, "best-of-2", True) == 0.9  # seeds 0 and 1, not the best overall
    assert select(values, "best-of-2", False) == 0.7
    assert select(values, "median", True) == pytest.approx(0.65)
    assert select(values, "mean", True) == pytest.approx(0.675)
    assert select({0: 0.8}, "best-of-2", True) == 0.8


def test_report_columns_tests_and_holm_against_scipy():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records()))
    f = report.frame.set_index("variant")
    for col in ("accuracy_std", "accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta",
                "accuracy_p", "accuracy_win_rate", "train_time_s_ci95_low", "n_seeds"):  # fmt: skip
        assert col in f, col
    assert not any(c.startswith(("params_", "flops_")) and c.endswith(("_std", "_ci95_low", "_p"))
                   for c in f.columns)  # fmt: skip
    raw = [sps.ttest_rel(acc, ACCURACY["mnist.baseline"]).pvalue
           for v, acc in ACCURACY.items() if v != "mnist.baseline"]  # fmt: skip
    expected = dict(zip(list(ACCURACY)[1:], holm(raw), strict=True))
    for variant, p in expected.items():
        assert f.loc[variant, "accuracy_p"] == pytest.approx(p)
    assert f.loc["mnist.fp_max_s2", "accuracy_p"] < 0.05 < f.loc["mnist.fp_max_s4", "accuracy_p"]
    assert f.loc["mnist.fp_max_s2", "accuracy_win_rate"] == 1.0
    assert math.isnan(f.loc["mnist.baseline", "accuracy_p"])
    low, high = sps.t.interval(0.95, 3, loc=np.mean(ACCURACY["mnist.topk_s2"]),
                               scale=sps.sem(ACCURACY["mnist.topk_s2"]))  # fmt: skip
    assert (f.loc["mnist.topk_s2", "accuracy_ci95_low"], f.loc["mnist.topk_s2", "accuracy_ci95_high"]) == pytest.approx((low, high))  # fmt: skip

    markdown = render_markdown(report)
    fp_line = next(line for line in markdown.splitlines() if line.startswith("| Feature pooling"))
    assert re.search(r"0\.98\d\d ± 0\.00\d\d †", fp_line), fp_line
    assert "12855498 ±" not in markdown and "1,000 ±" not in markdown  # no spread on params
    assert "Holm-adjusted" in markdown and "best-of-2 rule would add" in markdown
    assert "## Against the baseline" in markdown
    assert "## Claims" in markdown.split("## Against the baseline")[1]


def test_best_of_2_picks_the_better_of_the_first_two_seeds():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records()), select_rule="best-of-2")
    f = report.frame.set_index("variant")
    for variant, acc in ACCURACY.items():
        assert f.loc[variant, "accuracy"] == max(acc[:2])
    assert f.loc["mnist.topk_s2", "train_time_s"] == pytest.approx(20.0)  # lower time is better
    assert "best of the row's first two seeds" in render_markdown(report)


def test_one_seed_leaves_the_tests_empty_and_says_why():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=1)))
    assert report.frame["accuracy_p"].isna().all() and report.frame["accuracy_delta"].isna().all()
    assert "accuracy_ci95_low" not in report.frame
    assert "need 2 or more seeds" in render_markdown(report)


def test_claims_supported_contradicted_inconclusive_and_not_run():
    report = build_report(TABLE1, "paper", FakeStore(_table1_records()))
    measured, blocks = report.measured, (None,)

    def verdict(rows, low=0.0, kind="greater", columns=("accuracy",)):
        return check(Claim("c", "s", kind, rows, columns, low=low), measured, blocks, "paper")

    assert verdict(("mnist.fp_max_s2", "mnist.baseline")).verdict == "supported"
    assert verdict(("mnist.topk_s2", "mnist.baseline")).verdict == "contradicted"
    assert verdict(("mnist.fp_max_s4", "mnist.baseline")).verdict == "inconclusive"
    ratio = verdict(("mnist.topk_s2", "mnist.fp_max_s2"), 10, "ratio", ("train_time_s",))
    assert ratio.verdict == "supported" and ratio.parts[0].estimate.mean == pytest.approx(20)
    best = verdict(("mnist.fp_max_s2", *[v for v in ACCURACY if v != "mnist.fp_max_s2"]),
                   kind="best")  # fmt: skip
    assert best.verdict == "supported"
    missing = check(Claim("c", "s", "greater", ("mnist.fp_max_s2", "mnist.baseline"),
                          ("accuracy",)), {}, blocks, "paper")  # fmt: skip
    assert missing.verdict == "not run"
    one = build_report(TABLE1, "paper", FakeStore(_table1_records(seeds=1)))
    assert all(c.verdict in ("inconclusive", "not run") for c in one.checks)

    text = render_markdown(report)
    claims = text.split("## Claims")[1]
    lines = {
        line.split("|")[1].strip(): line for line in claims.splitlines() if line.startswith("| ")
    }
    assert "| supported" in lines[TABLE1.claims[0].text]
    assert "| supported" in lines[TABLE1.claims[2].text]  # 20x slower: within 9.7..38.8


def test_demo_and_smoke_verdicts_are_not_evidence_but_show_the_numbers():
    report = build_report(TABLE1, "smoke", FakeStore(_table1_records("smoke")))
    assert {c.verdict for c in report.checks} == {"not evidence (demo/smoke)"}
    first = report.checks[0]
    assert first.on_the_numbers == "supported" and "n = 4" in first.measurement()
    assert "on these numbers: supported" in render_markdown(report)


def test_every_format_carries_the_new_columns_and_claims():
    report = build_report(TABLE1, "smoke", FakeStore(_table1_records("smoke", seeds=3)))
    header = render_csv(report).splitlines()[0].split(",")
    for col in ("accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta", "accuracy_p",
                "accuracy_std", "n_seeds"):  # fmt: skip
        assert col in header
    payload = json.loads(render_json(report))  # strict JSON: NaN written as null
    assert payload["meta"]["select"] == "mean" and len(payload["claims"]) == len(TABLE1.claims)
    assert payload["claims"][0]["verdict"] == "not evidence (demo/smoke)"
    latex = render_latex(report)
    assert "±" in latex and "tab:table1-claims" in latex and "not evidence" in latex


def test_denoising_claims_hold_at_every_sigma():
    records = []
    for variant, level in (
        ("denoiser.baseline", 25.0),
        ("denoiser.fp1", 26.0),
        ("denoiser.fp2", 27.5),
    ):
        for sigma in TABLE4.sigmas:
            for seed in range(3):
                # fp2 - fp1 shrinks to a tie at sigma 60: that claim is not supported there
                bump = (
                    0.0
                    if (variant == "denoiser.fp2" and sigma < 60)
                    else -1.5 * (variant == "denoiser.fp2")
                )
                metrics = {"psnr": level + bump - sigma / 20 + 0.01 * seed * (variant != "denoiser.fp1"),
                           "noisy_psnr": 20.0, "ssim": 0.5}  # fmt: skip
                records.append(_record(TABLE4, variant, "paper", seed, metrics, sigma))
    report = build_report(TABLE4, "paper", FakeStore(records))
    verdicts = [c.verdict for c in report.checks]
    assert verdicts == ["inconclusive", "supported", "contradicted"], verdicts
    assert "noisy_psnr_sigma20_p" not in report.frame  # the input's PSNR improves neither way


def test_figures_draw_95_percent_intervals():
    from matplotlib.container import ErrorbarContainer

    from harness.render.figures import _psnr_curves, _rows_figure

    report = build_report(TABLE1, "paper", FakeStore(_table1_records()))
    ax = _rows_figure(report, ["accuracy"]).axes[1]  # axes[0] holds the legend
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    f = report.frame
    segment = bars[0].lines[2][0].get_segments()[0]  # the baseline's horizontal bar, in percent
    expected = (f["accuracy_ci95_low"].iloc[0] * 100, f["accuracy_ci95_high"].iloc[0] * 100)
    assert (segment[0][0], segment[1][0]) == pytest.approx(expected)

    records = [
        _record(TABLE4, v, "paper", seed, {"psnr": 25 + seed + (v == "denoiser.fp2"), "ssim": 0.5}, s)
        for v in TABLE4.rows for s in TABLE4.sigmas for seed in range(2)
    ]  # fmt: skip
    psnr = build_report(TABLE4, "paper", FakeStore(records))
    ax = _psnr_curves(psnr, TABLE4.sigmas).axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 3 * len(TABLE4.sigmas)


@pytest.mark.slow
def test_smoke_run_with_three_seeds_renders_every_new_column(tmp_path, capsys):
    from harness.cli import main

    runs, out = str(tmp_path / "runs"), tmp_path / "reports"
    assert main(["run", "table1", "--profile", "smoke", "--seeds", "3", "--runs-dir", runs,
                 "--out", str(out)]) == 0  # fmt: skip
    assert (
        main(["report", "table1", "--runs-dir", runs, "--out", str(out), "--format", "json"]) == 0
    )
    new = ("accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta", "accuracy_p", "n_seeds")
    header = (out / "smoke" / "table1.csv").read_text().splitlines()[0].split(",")
    assert all(c in header for c in new) and "params_ci95_low" not in header
    rows = json.loads((out / "smoke" / "table1.json").read_text())["rows"]
    assert all(r["n_seeds"] == 3 and r["accuracy_ci95_low"] <= r["accuracy"] for r in rows)
    assert all(r["accuracy_p"] is not None for r in rows[1:]) and rows[0]["accuracy_p"] is None
    markdown, latex = (
        (out / "smoke" / "table1.md").read_text(),
        (out / "smoke" / "table1.tex").read_text(),
    )
    assert "95% confidence interval" in markdown and "## Claims" in markdown
    assert "not evidence (demo/smoke)" in markdown and "not evidence" in latex
    assert " ± " in latex and "Holm" in latex

    capsys.readouterr()
    assert main(["report", "table1", "--runs-dir", runs, "--format", "json", "--select", "best-of-2"]) == 0  # fmt: skip
    best = {r["variant"]: r["accuracy"] for r in json.loads(capsys.readouterr().out)["rows"]}
    seeds: dict[str, dict[int, float]] = {}
    for path in (tmp_path / "runs" / "table1" / "smoke").glob("*.json"):
        record = json.loads(path.read_text())
        seeds.setdefault(record["config"]["variant"], {})[record["config"]["seed"]] = record["metrics"]["accuracy"]  # fmt: skip
    assert best == {v: pytest.approx(max(s[0], s[1])) for v, s in seeds.items()}

    assert main(["claims", "table1", "--runs-dir", runs]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if not line.startswith("  to decide it: ")]
    assert len(lines) == len(TABLE1.claims) and all("not evidence" in line for line in lines)
    # issue 27: resampling statistics per comparison, seeds needed per inconclusive claim
    resampled = ("accuracy_boot_low", "accuracy_boot_high", "accuracy_perm_p",
                 "accuracy_p_improve", "accuracy_expected_max", "accuracy_seeds_needed")  # fmt: skip
    assert all(c in header for c in resampled)
    for r in rows[1:]:
        assert 0 <= r["accuracy_p_improve"] <= 1 and r["accuracy_perm_p"] >= 0.25  # 3 seeds
        assert r["accuracy_boot_low"] is None or r["accuracy_boot_low"] <= r["accuracy_delta"]
    assert "## Against the baseline" in markdown and "p (sign-flip)" in markdown
    assert "Expected best of 2" in markdown and "nan" not in markdown.lower()
    undecided = [line for line in lines if "inconclusive" in line]
    assert all(re.search(r"inconclusive at n=3; .*seeds would", line) for line in undecided)
    assert main(["plan", "table1", "--profile", "smoke", "--runs-dir", runs,
                 "--seeds-for-claims"]) in (0, None)  # fmt: skip
    plan = capsys.readouterr().out
    if undecided:
        assert "would decide it" in plan and "cells done" in plan and "to run" in plan
    else:
        assert "no claim is inconclusive" in plan


def test_seed_gives_every_imagenet_row_the_same_augmentation(tmp_path, monkeypatch):
    """Rows differ in how much of the global RNG building them uses; the epochs' crops and
    flips (drawn by the DataLoader from that RNG) must not depend on it, or the paired tests
    would compare rows on different data."""
    from dataclasses import replace

    import torch
    from torch import nn

    from harness.core.runtime import Runtime
    from harness.data.imagenet import open_folders
    from harness.store.records import RunStore
    from harness.tables.paper import TABLES
    from harness.tasks.folders import engine as imagenet
    from tests.fixtures import write_image_folder

    write_image_folder(tmp_path / "data")
    data = open_folders("imagenet_smoke", tmp_path / "data")
    protocol = replace(TABLES["imagenet"].protocol("smoke"), epochs=2, test_repeats=1)
    seen: list[torch.Tensor] = []

    real_epoch = imagenet.FolderSteps.epoch

    def recording(self, epoch):
        batches = list(real_epoch(self, epoch))  # the epoch's inputs, as training sees them
        seen.append(torch.cat([x for x, _ in batches]))
        return iter(batches)

    monkeypatch.setattr(imagenet.FolderSteps, "epoch", recording)
    inputs = []
    for width in (4, 64):  # different amounts of random initialisation
        seen.clear()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(width, data.classes))  # fmt: skip
        config = {"table": "imagenet", "profile": "smoke", "variant": f"w{width}", "seed": 0}
        imagenet.run_folder_cell(
            model, data, protocol, config, store=RunStore(tmp_path / "runs"),
            device=torch.device("cpu"), desc="", runtime=Runtime(channels_last=False),
            save_weights=False,
        )  # fmt: skip
        inputs.append(list(seen))
    assert len(inputs[0]) == 2 and not torch.equal(inputs[0][0], inputs[0][1])  # epochs differ
    assert all(torch.equal(a, b) for a, b in zip(*inputs, strict=True))


def test_every_claim_names_rows_and_columns_of_its_table():
    from harness.tables.paper import TABLES

    for spec in TABLES.values():
        assert spec.claims, spec.name
        for claim in spec.claims:
            assert set(claim.rows) <= set(spec.rows), (spec.name, claim.text)
            assert set(claim.columns) <= set(spec.columns), (spec.name, claim.text)
            assert claim.source and claim.low < claim.high
