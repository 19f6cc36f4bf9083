"""A task defined outside harness/ runs through plan, run, report, claims and figures.

The task (tests/toy/regression.py) is found as an installed package's would be: through
an entry point of group ``harness.tasks``, declared here in a ``.dist-info`` folder put
on ``sys.path`` (what pip writes for an installed distribution).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.task import get_task
from harness.render.figures import table_plot
from harness.render.report import build_report, render_markdown
from harness.run.planning import plan_cells
from harness.run.runner import run_table
from harness.stats.claims import Claim
from harness.store.records import RunStore
from harness.tables.cells import table_cells
from harness.tables.paper import TableSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("site")
    info = site / "toy_regression-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-regression\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[harness.tasks]\ntoy_regression = tests.toy.regression:TASK\n"
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(site))


CLAIM = Claim(
    "the wide MLP fits at least as well", "test", "greater",
    ("toy_mlp.baseline", "toy_mlp.wide"), ("mse",), low=-1.0,
)  # fmt: skip


def _spec() -> TableSpec:
    from tests.toy.regression import LineProtocol

    return TableSpec(
        name="toy_line",
        title="A line fitted by two MLPs",
        rows=("toy_mlp.baseline", "toy_mlp.wide"),
        columns=("mse", "train_time_s", "params", "flops"),
        protocols={"smoke": LineProtocol(dataset="line", epochs=30, batch_size=32, lr=0.03)},
        task="toy_regression",
        save_weights=False,
        claims=(
            Claim(
                "the wide MLP fits at least as well",
                "test",
                "greater",
                ("toy_mlp.baseline", "toy_mlp.wide"),
                ("mse",),
                low=-1.0,
            ),
        ),
    )


def test_the_entry_point_finds_the_task(installed) -> None:
    assert get_task("toy_regression").metrics[0].name == "mse"


def test_plan_run_report_claims_figures(installed, tmp_path: Path) -> None:
    spec, store = _spec(), RunStore(tmp_path / "runs")
    summary = run_table(spec, profile="smoke", seeds=2, device="cpu", store=store,
                        data_root=tmp_path / "data", log=lambda _: None)  # fmt: skip
    assert summary.ran == 4
    plan = plan_cells(table_cells(spec, "smoke", 2), store)
    assert all(cell.record is not None for cell in plan.cells)
    report = build_report(spec, "smoke", store)
    wide = report.frame.set_index("variant").loc["toy_mlp.wide"]
    assert wide["mse"] < 0.1  # a 32-unit MLP fits a noisy line (noise variance 0.01)
    assert wide["params"] == 32 + 32 + 32 + 1
    text = render_markdown(report)
    assert "Units: MSE: squared units" in text and "mse: mean squared error" in text
    assert report.frame["mse_delta"].notna().any()  # paired against the baseline, 2 seeds
    assert [c.verdict for c in report.checks] != []
    assert table_plot(report) is not None


def test_no_file_under_harness_names_the_toy_task() -> None:
    done = subprocess.run(["grep", "-rl", "toy", str(ROOT / "harness")], capture_output=True)
    assert done.stdout == b""
