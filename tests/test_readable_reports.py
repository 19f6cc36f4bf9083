"""Reports read where people read them: a terminal-wide Markdown table, a LaTeX caption
that is only a title, a word when a file is replaced, the nearest name for a typo, and
what would decide a claim that is not decided."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from scipy import stats

from harness.cli import main
from harness.render.report import build_report, render_latex, render_markdown, title
from harness.stats.claims import INCONCLUSIVE, Claim, check, seeds_to_decide
from harness.store.records import RunStore
from harness.tables.paper import get_table

GOLDEN = Path(__file__).parent / "golden" / "runs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("readable") / "runs"
    shutil.copytree(GOLDEN / "table1", target / "table1")
    return target


def _tables(markdown: str) -> list[list[str]]:
    """Each Markdown table's lines."""
    return [block.splitlines() for block in re.findall(r"(?:^\|.*\n)+", markdown, re.M)]


def test_the_main_table_keeps_to_the_papers_columns(runs: Path) -> None:
    report = build_report(get_table("table1"), "smoke", RunStore(runs))
    main_table, beyond, _claims = _tables(render_markdown(report))
    header = [c.strip() for c in main_table[0].strip("|").split("|")]
    assert header == ["Row", "Accuracy", "paper", "Train time", "paper", "Test time", "paper",
                      "Params, paper conv.", "paper", "FLOPs, paper conv.", "paper", "Seeds"]  # fmt: skip
    assert max(map(len, main_table)) < 200  # was 330: 13 columns with units in the headers
    assert len(main_table) == 2 + len(report.frame)
    extra = [c.strip() for c in beyond[0].strip("|").split("|")]
    assert extra == ["Row", "Train time, IQR", "Test time, IQR", "Params", "FLOPs"]
    assert "Units: Accuracy: fraction; Train time: s/epoch" in render_markdown(report)


def test_a_latex_caption_is_only_the_title(runs: Path) -> None:
    report = build_report(get_table("table1"), "smoke", RunStore(runs))
    latex = render_latex(report)
    captions = re.findall(r"\\caption\{(.*)\}", latex)
    assert captions[0] == title(report) and len(captions) == 3  # results, beyond, claims
    first = latex.split("\\end{table}")[0]
    note = first.split("\\end{tabular}")[1]
    assert "Smoke run (profile smoke)" in note and "Protocol (smoke)" in note
    assert "\\multicolumn{2}{c}{Accuracy}" in first and "ours & paper" in first


def test_report_says_when_it_replaces_a_file(runs: Path, tmp_path: Path, capsys) -> None:
    args = ["report", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--format", "csv",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'smoke' / 'table1.csv'}")
    assert main(args) == 0
    assert capsys.readouterr().out == f"replaced {tmp_path / 'smoke' / 'table1.csv'}\n"


def test_claims_say_what_would_decide_them(runs: Path, capsys) -> None:
    assert main(["claims", "table1", "--profile", "smoke", "--runs-dir", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    advice = [ln for ln in lines if ln.startswith("  to decide it: ")]
    assert len(advice) == len(get_table("table1").claims)  # smoke: none is evidence
    assert "`python -m harness run table1 --profile paper --seeds 2`" in advice[0]
    assert main(["claims", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--format", "json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert [r["to_decide"] for r in rows] == [a.removeprefix("  to decide it: ") for a in advice]


def _accuracy_check(base: list[float], other: list[float]):
    measured = {
        (None, "mnist.baseline"): {"accuracy": dict(enumerate(base))},
        (None, "mnist.fp_max_s2"): {"accuracy": dict(enumerate(other))},
    }
    claim = Claim("FP beats the baseline", "s", "greater", ("mnist.fp_max_s2", "mnist.baseline"),
                  ("accuracy",))  # fmt: skip
    return check(claim, measured, (None,), "paper")


def test_seeds_to_decide_is_where_the_interval_would_clear_the_threshold() -> None:
    result = _accuracy_check([0.90, 0.91, 0.92], [0.905, 0.93, 0.925])  # diffs .005 .02 .005
    assert result.verdict == INCONCLUSIVE
    n = seeds_to_decide(result)
    diffs = [0.005, 0.02, 0.005]
    mean, sd = sum(diffs) / 3, stats.tstd(diffs)

    def clears(m: int) -> bool:
        return stats.t.ppf(0.975, m - 1) * sd / math.sqrt(m) < mean

    assert n is not None and clears(n) and not clears(n - 1)
    assert f"about {n} seeds per row (now 3)" in result.to_decide("table1", "paper")
    # a difference centred on the threshold: no number of seeds is advice
    flat = _accuracy_check([0.90, 0.91, 0.92], [0.91, 0.90, 0.92])
    assert seeds_to_decide(flat) is None and "unlikely" in flat.to_decide("table1", "paper")
    one = _accuracy_check([0.90], [0.91])
    assert "--seeds 2" in one.to_decide("table1", "paper")
