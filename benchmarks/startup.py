"""Start-up of the CLI against ``python -c "import torch"``, on this machine (issue 29).

Every ``list``, ``plan``, ``report`` and ``--help`` pays the CLI's imports; the goal is
within 1.3x of importing torch (which they no longer import, unless ``plan`` builds a
model whose costs are not in the cache). Each command is a fresh
process, run in turns with the baseline (torch, command, torch, command, ...), so a
change in the machine's load hits both halves of a pair alike; the figure is the median
of the pairwise ratios, with its IQR/median and bench's ``noisy`` flag.

    python benchmarks/startup.py                 # 7 rounds
    python benchmarks/startup.py --rounds 15 --json
    python benchmarks/startup.py --root ../main     # another clone's CLI (before/after)

``report`` renders Table 1 from the golden records in tests/golden/runs (Markdown with
its plot, into a temporary folder). ``plan`` and ``report`` keep what is slow and
determined by their inputs in the cost cache (``harness.store.cache``; a temporary one
here): a model's parameter and FLOP counts, and which plot files were drawn from which
records. Both are timed twice: as they run again (caches warm, the plot kept) and as they
run the first time (``cold cache``: every model built and traced; ``new plot``: drawn).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.tools.bench import NOISY, Estimate

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_RUNS = ROOT / "tests" / "golden" / "runs"
BASELINE = ("-c", "import torch")
GOAL = 1.3
CACHE_ENV = "HARNESS_CACHE_DIR"  # harness.store.cache: model costs and drawn plots


def commands(out: Path) -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    """The timed commands (arguments after the interpreter, extra environment), by name.
    ``{call}`` in either is replaced by a number new at every call: a fresh folder."""
    harness = ("-m", "harness")
    cache = {CACHE_ENV: str(out / "cache")}  # warm after the first call
    report = (*harness, "report", "table1", "--runs-dir", str(GOLDEN_RUNS), "--format", "md")
    return {
        "--help": ((*harness, "--help"), cache),
        "list": ((*harness, "list"), cache),
        "plan table1": ((*harness, "plan", "table1", "--runs-dir", str(out / "runs")), cache),
        "report table1 md": ((*report, "--out", str(out / "reports")), cache),
        # the first time: no cached model costs, no plot drawn from the same records
        "plan table1, cold cache": (
            (*harness, "plan", "table1", "--runs-dir", str(out / "runs")),
            {CACHE_ENV: str(out / "cold-{call}")},
        ),
        "report table1 md, new plot": ((*report, "--out", str(out / "new-{call}")), cache),
    }


_CALLS = itertools.count()


def _seconds(args: tuple[str, ...], root: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of one fresh interpreter running ``args`` in ``root``; exits if it fails."""
    call = str(next(_CALLS))
    args = tuple(a.replace("{call}", call) for a in args)
    extra = {k: v.replace("{call}", call) for k, v in (env or {}).items()}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), **extra})  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"python {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def measure(rounds: int, root: Path = ROOT) -> dict[str, object]:
    """Per command: its median time, the baseline's, and the median pairwise ratio."""
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (args, env) in commands(Path(tmp)).items():
            _seconds(args, root, env)  # warm the file cache for both sides (and the caches)
            _seconds(BASELINE, root)
            pairs = [(_seconds(BASELINE, root), _seconds(args, root, env)) for _ in range(rounds)]
            ratio = Estimate.of([command / torch for torch, command in pairs])
            results[name] = {
                "seconds": Estimate.of([c for _, c in pairs]).median,
                "import_torch_seconds": Estimate.of([t for t, _ in pairs]).median,
                "ratio": ratio.median, "iqr_over_median": ratio.spread,
                "noisy": ratio.noisy, "rounds": ratio.n,
            }  # fmt: skip
    return {"root": str(root), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "cpus": os.cpu_count(), "goal": GOAL, "noisy_above": NOISY, "commands": results}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="pairs per command (default 7)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the clone whose CLI is timed (default: this one)")  # fmt: skip
    args = parser.parse_args()
    result = measure(args.rounds, args.root.resolve())
    if args.json:
        print(json.dumps(result, indent=2))
        return
    load = ", ".join(f"{x:.1f}" for x in result["load_average_before"])
    print(f"{result['root']}: load average before: {load}; after: "
          f"{', '.join(f'{x:.1f}' for x in result['load_average_after'])}; {result['cpus']} CPUs")  # fmt: skip
    print("| command | s | import torch s | ratio | IQR/median | |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r in result["commands"].items():
        flags = [f for f, on in (("noisy", r["noisy"]), (f"over {GOAL}x", r["ratio"] > GOAL)) if on]
        print(f"| {name} | {r['seconds']:.2f} | {r['import_torch_seconds']:.2f} | "
              f"{r['ratio']:.2f} | {r['iqr_over_median']:.2f} | {', '.join(flags)} |")  # fmt: skip


if __name__ == "__main__":
    main()
