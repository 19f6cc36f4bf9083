"""Wall time of whole smoke tables under the local executor and under Ray with 1 and 2
cells at a time, on this machine: the speed-up of running cells side by side, and what
Ray costs per cell.

Each run is a fresh ``python -m harness run TABLE --profile smoke`` in its own empty
runs folder (so every cell trains), timed from outside, one after another:

* local: the cells in order in one process (torch's default threads);
* ray x1: ``--executor ray --cpus-per-cell N`` with N = all cores, so one cell at a time
  with as many threads as local: the difference from local is Ray's overhead
  (start-up of the local instance, worker processes, each worker loading the data);
* ray x2: ``--cpus-per-cell N/2``: two cells at a time, each with half the threads.

    python benchmarks/ray_scaling.py                     # table1 and table4, smoke
    python benchmarks/ray_scaling.py --tables table1 --repeats 2

Writes ``reports/bench/ray_scaling.json``. The numbers hold for this machine only; on a
busy machine repeat and read the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"\[smoke\]: (\d+) trained, (\d+) already done, (\d+) failed")


def _timed_run(table: str, extra: list[str]) -> tuple[float, int]:
    """Seconds for one fresh smoke run of ``table`` and the cells it trained."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "harness", "run", table, "--profile", "smoke",
                   "--device", "cpu", "--runs-dir", f"{tmp}/runs", "--out", f"{tmp}/out", *extra]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        seconds = time.perf_counter() - start
    match = SUMMARY.search(done.stdout)
    if done.returncode != 0 or match is None or int(match[3]):
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["table1", "table4"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    modes = {
        "local": [],
        "ray x1": ["--executor", "ray", "--cpus-per-cell", str(cores)],
        "ray x2": ["--executor", "ray", "--cpus-per-cell", str(max(cores / 2, 1))],
    }
    results = []
    for table in args.tables:
        times: dict[str, list[float]] = {m: [] for m in modes}
        cells = 0
        for _ in range(args.repeats):
            for mode, extra in modes.items():  # interleaved, so drift hits every mode alike
                seconds, cells = _timed_run(table, extra)
                times[mode].append(seconds)
                print(f"{table} {mode}: {seconds:.1f} s for {cells} cells", flush=True)
        median = {m: statistics.median(t) for m, t in times.items()}
        results.append(
            {
                "table": table,
                "cells": cells,
                "wall_s": times,
                "median_s": median,
                "speedup_ray_x2_over_local": median["local"] / median["ray x2"],
                "speedup_ray_x2_over_ray_x1": median["ray x1"] / median["ray x2"],
                "ray_overhead_per_cell_s": (median["ray x1"] - median["local"]) / cells,
            }
        )
    for r in results:
        print(
            f"{r['table']}: {r['cells']} cells; local {r['median_s']['local']:.1f} s, ray x1 "
            f"{r['median_s']['ray x1']:.1f} s, ray x2 {r['median_s']['ray x2']:.1f} s; "
            f"speed-up x2/local {r['speedup_ray_x2_over_local']:.2f}, x2/x1 "
            f"{r['speedup_ray_x2_over_ray_x1']:.2f}; Ray overhead "
            f"{r['ray_overhead_per_cell_s']:.2f} s per cell (start-up included)"
        )
    out = ROOT / "reports" / "bench" / "ray_scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(timespec="seconds"),
                               "cores": cores, "results": results}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
