"""Seconds per cell that the executors themselves cost, measured with cells that do
nothing (``tests/toy/noop.py``): what is left of a no-op cell's time is planning, the
lease, the worker, the data cache and the record written to the store.

Each pass is a whole ``run_table`` of N no-op cells into an empty runs folder:

* local: the cells one after another in this process;
* ray: on the executor's pool of workers. Ray's start-up (``ray.init``) and the first
  pass, whose workers start, import the harness and open the data, are reported on their
  own; the passes after it measure the cost per cell once the cluster is up.

    python benchmarks/executor_overhead.py                  # 200 cells, 5 passes each
    python benchmarks/executor_overhead.py --cells 50 --repeats 3 --executors local

Targets (issue 29): local <= 0.1 s per cell, Ray <= 0.3 s per cell once the cluster is
up. Writes ``reports/bench/executor_overhead.json``; the figures hold for this machine
only, so the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from harness.run.executors import LocalExecutor, RayExecutor  # noqa: E402
from harness.run.runner import run_table  # noqa: E402
from harness.store.records import RunStore  # noqa: E402
from tests.toy.noop import noop_table  # noqa: E402

TARGET_S = {"local": 0.1, "ray": 0.3}


def _pass(executor: LocalExecutor | RayExecutor, cells: int) -> float:
    """Seconds per cell of one run of ``cells`` no-op cells into an empty runs folder."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        start = time.perf_counter()
        summary = run_table(noop_table(cells), profile="smoke", seeds=cells, device="cpu",
                            store=store, data_root=Path(tmp), executor=executor,
                            log=lambda _: None)  # fmt: skip
        seconds = time.perf_counter() - start
    if (summary.ran, summary.failed) != (cells, 0):
        sys.exit(f"{executor.name}: {summary.line('noop', 'smoke')}")
    return seconds / cells


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(name: str, cells: int, repeats: int) -> dict[str, Any]:
    """One executor's figures: per-cell seconds of each warm pass (and Ray's start-up)."""
    executor = LocalExecutor() if name == "local" else RayExecutor()
    result: dict[str, Any] = {"executor": name, "cells": cells}
    try:
        if isinstance(executor, RayExecutor):
            start = time.perf_counter()
            executor.connect()
            result["ray_init_s"] = time.perf_counter() - start
        result["first_pass_s_per_cell"] = _pass(executor, cells)  # workers start, data opens
        result["s_per_cell"] = [_pass(executor, cells) for _ in range(repeats)]
    finally:
        executor.shutdown()
    result |= {"spread": _spread(result["s_per_cell"]), "target_s": TARGET_S[name]}
    return result


def _line(r: dict[str, Any]) -> str:
    s = r["spread"]
    verdict = "meets" if s["median"] <= r["target_s"] else "MISSES"
    init = f"; ray.init {r['ray_init_s']:.2f} s" if "ray_init_s" in r else ""
    return (
        f"{r['executor']}: {s['median'] * 1e3:.1f} ms per cell (min {s['min'] * 1e3:.1f}, "
        f"max {s['max'] * 1e3:.1f}) over {len(r['s_per_cell'])} passes of {r['cells']} cells; "
        f"first pass {r['first_pass_s_per_cell'] * 1e3:.1f} ms per cell{init}; "
        f"{verdict} the target of {r['target_s']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--executors", nargs="+", choices=sorted(TARGET_S), default=["local", "ray"]
    )
    args = parser.parse_args()
    load = os.getloadavg()
    results = [measure(name, args.cells, args.repeats) for name in args.executors]
    for r in results:
        print(_line(r), flush=True)
    after = os.getloadavg()
    print(
        f"load average (1 min) {load[0]:.2f} before, {after[0]:.2f} after; {os.cpu_count()} cores"
    )
    out = ROOT / "reports" / "bench" / "executor_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(timespec="seconds"),
                               "cores": os.cpu_count(), "load_before": load, "load_after": after,
                               "results": results}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
