"""Wall time of whole tables under the local executor and under Ray, on this machine: the
speed-up of running cells side by side, and what Ray costs against running them here.

Each run is a fresh ``python -m harness run TABLE --profile PROFILE`` in its own empty runs
folder (so every cell trains), timed from outside (Ray's start-up included), one after
another, interleaved over repeats so that drift hits every mode alike:

* ``local``: the cells in order in one process (torch's default threads);
* ``ray``: ``--executor ray`` as it comes: a local Ray instance with one worker per core,
  each cell on one core (one thread);
* ``ray-1``: the same on a Ray instance given one CPU: one worker, one cell at a time on
  one core (what ``ray`` is N times faster than, ideally);
* ``ray-up``: ``--executor ray`` on a one-node cluster that is already up (started once
  here with ``ray start --head``, as a user keeps one, and stopped at the end): Ray's
  per-run cost without the instance's start and stop.

Targets (issue 29): ``ray`` no slower than ``local`` on Table 1's smoke, and ``ray`` with
2 workers on 2 cores at least 1.6x ``ray-1`` on Table 1's demo (minutes):

    python benchmarks/ray_scaling.py                                  # table1 smoke
    python benchmarks/ray_scaling.py --profile demo --modes ray-1 ray

Writes ``reports/bench/ray_scaling-PROFILE.json``. The numbers hold for this machine only,
and a busy machine slows the two-worker run most: read the load averages printed beside,
and the parallel ceiling measured before and after the runs (how much more CPU work two
processes get done than one; no two-worker speed-up can exceed it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.core import machine

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"\[\w+\]: (\d+) trained, (\d+) already done, (\d+) failed")
# a Ray instance with one CPU, then the harness's own command line on it
ONE_WORKER = (
    'import sys, ray; ray.init(address="local", num_cpus=1, include_dashboard=False, '
    "object_store_memory=256 * 2**20)\n"
    "from harness.cli import main\n"
    "try:\n    code = main(sys.argv[1:])\nfinally:\n    ray.shutdown()\nsys.exit(code)"
)
# a CPU-bound probe: one-thread matmuls for a fixed time, printing how many it did
PROBE = (
    "import time, torch\ntorch.set_num_threads(1)\nx = torch.randn(256, 256)\n"
    "end, n = time.perf_counter() + {seconds}, 0\n"
    "while time.perf_counter() < end:\n    x @ x\n    n += 1\nprint(n)"
)
RAY_UP_PORT = 6391  # the head of the cluster that ``ray-up`` runs on, started here
# ``ray start`` turns token authentication on; its clients must say they use it
RAY_UP_ENV = {"RAY_AUTH_MODE": "token"}
MODES = {
    "local": ([sys.executable, "-m", "harness"], []),
    "ray": ([sys.executable, "-m", "harness"], ["--executor", "ray"]),
    "ray-1": ([sys.executable, "-c", ONE_WORKER], ["--executor", "ray"]),
    "ray-up": (
        [sys.executable, "-m", "harness"],
        ["--executor", "ray", "--address", f"127.0.0.1:{RAY_UP_PORT}"],
    ),
}


def _timed_run(table: str, profile: str, mode: str) -> tuple[float, int]:
    """Seconds for one fresh run of ``table`` and the cells it trained."""
    launcher, extra = MODES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        command = [*launcher, "run", table, "--profile", profile, "--device", "cpu",
                   "--runs-dir", f"{tmp}/runs", "--out", f"{tmp}/out", *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
        if mode == "ray-up":
            env |= RAY_UP_ENV
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    match = SUMMARY.search(done.stdout)
    if done.returncode != 0 or match is None or int(match[3]):
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, int(match[1])


def parallel_ceiling(seconds: float = 4.0) -> float:
    """How much more work two one-thread processes of ours get done than one, right now:
    2.0 on two idle cores, 1.0 when the other load leaves us one core. No speed-up of
    two workers over one can exceed it."""

    def probes(count: int) -> list[int]:
        command = [sys.executable, "-c", PROBE.format(seconds=seconds)]
        running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                   for _ in range(count)]  # fmt: skip
        return [int(p.communicate()[0]) for p in running]

    alone = probes(1)[0]
    return sum(probes(2)) / alone


@contextlib.contextmanager
def ray_cluster(cpus: int) -> Iterator[None]:
    """A one-node Ray cluster for ``ray-up`` (as a user would keep one with ``ray start``),
    stopped at the end: ``ray start --block`` stops what it started when terminated."""
    ray = Path(sys.executable).with_name("ray")
    flags = ["--port", str(RAY_UP_PORT), "--num-cpus", str(cpus), "--include-dashboard=false",
             "--disable-usage-stats"]  # fmt: skip
    env = {**os.environ, **RAY_UP_ENV}
    head = subprocess.Popen([ray, "start", "--head", "--block", *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        status = [ray, "status", "--address", f"127.0.0.1:{RAY_UP_PORT}"]
        while subprocess.run(status, capture_output=True, env=env).returncode != 0:
            if head.poll() is not None or time.time() > deadline:
                sys.exit("ray start --head did not come up")
            time.sleep(1)
        yield
    finally:
        head.terminate()
        head.wait(timeout=60)


def _table(table: str, profile: str, modes: list[str], repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {m: [] for m in modes}
    loads: list[float] = []
    cells = 0
    for _ in range(repeats):
        for mode in modes:
            loads.append(os.getloadavg()[0])
            seconds, cells = _timed_run(table, profile, mode)
            times[mode].append(seconds)
            print(f"{table} {profile} {mode}: {seconds:.1f} s for {cells} cells "
                  f"(load before {loads[-1]:.2f})", flush=True)  # fmt: skip
    median = {m: statistics.median(t) for m, t in times.items()}
    result: dict[str, Any] = {"table": table, "profile": profile, "cells": cells,
                              "wall_s": times, "median_s": median, "load_1min": loads}  # fmt: skip
    if "local" in median and "ray" in median:
        result["ray_over_local"] = median["ray"] / median["local"]  # <= 1: Ray no slower
    if "local" in median and "ray-up" in median:
        result["ray_up_over_local"] = median["ray-up"] / median["local"]
    if "ray-1" in median and "ray" in median:
        result["speedup_ray_over_ray_1"] = median["ray-1"] / median["ray"]
    return result


def _line(r: dict[str, Any]) -> str:
    walls = ", ".join(
        f"{m} {s:.1f} s ({min(r['wall_s'][m]):.1f}-{max(r['wall_s'][m]):.1f})"
        for m, s in r["median_s"].items()
    )
    ratios, cores = [], machine.cpu_budget()
    if "ray_over_local" in r:
        verdict = "no slower" if r["ray_over_local"] <= 1 else "SLOWER"
        ratios.append(f"ray/local {r['ray_over_local']:.2f} ({verdict})")
    if "ray_up_over_local" in r:
        verdict = "no slower" if r["ray_up_over_local"] <= 1 else "SLOWER"
        ratios.append(f"ray-up/local {r['ray_up_over_local']:.2f} ({verdict})")
    if "speedup_ray_over_ray_1" in r:
        verdict = "meets" if r["speedup_ray_over_ray_1"] >= 1.6 else "MISSES"
        ratios.append(
            f"{cores} workers over 1: {r['speedup_ray_over_ray_1']:.2f}x ({verdict} 1.6x)"
        )
    loads = r["load_1min"]
    return (
        f"{r['table']} {r['profile']}: {r['cells']} cells; {walls}; {'; '.join(ratios)}; "
        f"load average {min(loads):.2f}-{max(loads):.2f} on {cores} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["table1"])
    parser.add_argument("--profile", default="smoke", choices=("smoke", "demo"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    ceiling = [parallel_ceiling()]
    up = ray_cluster(machine.cpu_budget()) if "ray-up" in args.modes else contextlib.nullcontext()
    with up:
        results = [_table(t, args.profile, args.modes, args.repeats) for t in args.tables]
    ceiling.append(parallel_ceiling())
    for r in results:
        print(_line(r))
    print(
        f"two processes did {ceiling[0]:.2f}x one's CPU work before the runs and "
        f"{ceiling[1]:.2f}x after (2.00: two free cores)"
    )
    out = ROOT / "reports" / "bench" / f"ray_scaling-{args.profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(timespec="seconds"),
                               "cores": machine.cpu_budget(), "parallel_ceiling": ceiling,
                               "results": results}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
