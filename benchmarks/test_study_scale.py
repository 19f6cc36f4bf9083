"""A study of 2,020 cells (VGG-16, 5 positions x 4 methods x 5 strides + the baseline, 20
seeds each): ``plan`` and ``report`` on a runs folder holding a finished record for every
cell. Targets on a 2-core CPU: plan under 5 s, report (Markdown, LaTeX, CSV and the
ablation plot) under 10 s. With ``--benchmark-disable`` (CI) 2 seeds, run once.

The records are written by the fixture in the store's format (not trained): what is timed
is compiling the study, planning its cells against the store, and reading, summarising and
rendering the records.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.records import SCHEMA, RunStore, config_hash
from harness.tables import study
from harness.tables.cells import cell_key, table_cells

STUDY = """
name = "scale"
protocol = "table2"
[grid]
arch = "vgg16"
at = [1, 2, 3, 4, 5]
method = ["fp_max", "fp_min", "topk", "topk_min"]
stride = [2, 4, 8, 16, 32]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, quick: bool) -> tuple[Path, Path, int]:
    """The study file and a runs folder with a complete record of each of its cells."""
    root = tmp_path_factory.mktemp("scale")
    seeds = 2 if quick else 20
    path = root / "scale.toml"
    path.write_text(f"seeds = {seeds}\n" + STUDY)
    store = RunStore(root / "runs")
    configs = table_cells(study.load_study(path), "smoke", seeds)
    rng = random.Random(0)
    env = {"device": "cpu", "device_name": "synthetic", "torch": "-", "run": "bench"}
    for config in configs:
        record = {
            "schema": SCHEMA, "status": "complete", "key": config_hash(config),
            "cell_key": cell_key(config), "config": config,
            "metrics": {"accuracy": rng.uniform(0.8, 0.95), "train_time_s": 1.0,
                        "test_time_s": 0.1, "params": 14_000_000, "params_M_paper_conv": 13.4,
                        "flops": 3e8, "flops_paper_conv": 2.8e7},
            "wall_s": 1.0, "env": env, "data": "synthetic records", "history": [],
            "epoch_times_s": [1.0, 1.1], "test_times_s": [0.1, 0.1], "contention": 1,
            "started_at": "2026-01-01T00:00:00",
        }  # fmt: skip
        store.save(record)
    return path, store.root, len(configs)


def _fresh() -> None:
    """Each round compiles the study anew (as each command does)."""
    study._LOADED.clear()


def test_plan_2000_cells(benchmark, finished, capsys) -> None:
    path, runs, cells = finished
    benchmark.extra_info["cells"] = cells

    def plan() -> None:
        assert main(["plan", str(path), "--profile", "smoke", "--runs-dir", str(runs)]) in (0, None)

    benchmark.pedantic(plan, setup=_fresh, rounds=3, iterations=1)
    assert f"{cells} of {cells} cells done" in capsys.readouterr().out


def test_report_2000_cells(benchmark, finished, tmp_path) -> None:
    path, runs, cells = finished
    benchmark.extra_info["cells"] = cells
    out = tmp_path / "out"

    def report() -> None:
        code = main(["report", str(path), "--profile", "smoke", "--runs-dir", str(runs),
                     "--out", str(out)])  # fmt: skip
        assert code in (0, None)

    benchmark.pedantic(report, setup=_fresh, rounds=3, iterations=1)
    assert (out / "smoke" / "scale.csv").read_text().count("\n") == 102  # a header, 101 rows
    assert (out / "smoke" / "figures" / "scale.png").is_file()
