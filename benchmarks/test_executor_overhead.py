"""The local executor's cost per cell, with cells that do nothing (``tests/toy/noop.py``):
a whole ``run_table`` of N no-op cells into an empty runs folder per round (planning,
leases, the data cache, records). ``benchmarks/executor_overhead.py`` measures Ray too."""

import itertools
from pathlib import Path

from harness.run.executors import LocalExecutor
from harness.run.runner import run_table
from harness.store.records import RunStore
from tests.toy.noop import noop_table


def test_local_noop_cells(benchmark, quick, tmp_path):
    cells = 5 if quick else 100
    spec, folders = noop_table(cells), (tmp_path / str(i) for i in itertools.count())

    def fresh() -> tuple[tuple[RunStore], dict]:
        return (RunStore(next(folders)),), {}

    def run(store: RunStore) -> None:
        summary = run_table(spec, profile="smoke", seeds=cells, device="cpu", store=store,
                            data_root=Path(tmp_path), executor=LocalExecutor(),
                            log=lambda _: None)  # fmt: skip
        assert summary.ran == cells

    benchmark.group = "executor overhead"
    benchmark.extra_info["cells"] = cells
    benchmark.pedantic(run, setup=fresh, rounds=1 if quick else 5)
