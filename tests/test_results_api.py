"""harness.results / harness.summary: the records and the reported table as pandas frames,
on a copy of the golden smoke records (nothing is trained)."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.render.report import build_report
from harness.store.records import RunStore, read_json
from harness.tables.paper import get_table

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "runs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("results") / "runs"
    shutil.copytree(GOLDEN, target)
    return target


def test_import_harness_stays_cheap() -> None:
    code = "import sys, harness; print('pandas' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        harness.nothing  # noqa: B018
    assert {"results", "summary"} <= set(dir(harness))  # a notebook completes them


@pytest.mark.parametrize("table", ["table1", "table6"])
def test_one_row_per_cell_with_the_records_numbers(runs: Path, table: str) -> None:
    cells = harness.results(table, runs_dir=runs, profile="smoke")
    report = build_report(get_table(table), "smoke", RunStore(runs))
    assert len(cells) == report.meta["cells_done"] == len(set(cells["record"]))
    for _, row in cells.iterrows():
        record = read_json(Path(row["record"]))
        config = record["config"]
        assert (row["variant"], row["seed"]) == (config["variant"], config["seed"])
        assert row["protocol_hash"] == record["cell_key"] and row["wall_s"] == record["wall_s"]
        assert row["device"] == record["env"]["device"]
        for name, value in record["metrics"].items():
            assert row[name] == pytest.approx(value, nan_ok=True)
    if table == "table6":  # a denoising table: one cell per noise level
        assert cells["sigma"].notna().all() and cells["sigma"].nunique() > 1


def test_summary_is_the_reports_frame(runs: Path) -> None:
    table = harness.summary("table2", runs_dir=runs)  # profile: the newest record's
    report = build_report(get_table("table2"), "smoke", RunStore(runs))
    pd.testing.assert_frame_equal(table, report.frame)
    assert (table["n_seeds"] > 0).all()


def test_the_notebook_example_runs(runs: Path, monkeypatch, capsys) -> None:
    script = ROOT / "examples" / "notebook_results.py"
    monkeypatch.setattr(sys, "argv", [str(script), "table1", "--runs-dir", str(runs)])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "7 cells of table1 [smoke]" in out
    assert "mnist.baseline" in out and "n_seeds" in out


def test_an_unknown_table_is_one_line(runs: Path) -> None:
    with pytest.raises(harness.UserError):
        harness.results("table99", runs_dir=runs)


def test_a_study_file_is_accepted(tmp_path: Path) -> None:
    """A study is read as a table is: here one with no records yet (nothing is trained)."""
    study = ROOT / "examples" / "studies" / "mnist_stride_sweep.toml"
    cells = harness.results(str(study), runs_dir=tmp_path, profile="smoke")
    table = harness.summary(str(study), runs_dir=tmp_path, profile="smoke")
    assert cells.empty and len(table) > 1 and (table["n_seeds"] == 0).all()
