"""``python -m harness bench`` and the pytest-benchmark suite stay runnable."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.tools import bench as bench_module
from harness.tools.bench import (
    CASES,
    MIN_ROUNDS,
    NOISY,
    OPS,
    PASSES,
    QUICK_CASES,
    interleaved_ratio,
    timing_threads,
    topk_ratio,
    workload,
)

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"op", "shape", "pass", "device", "dtype", "median_s", "iqr_s", "gbps",
               "iqr_over_median", "noisy"}  # fmt: skip


def test_quick_bench_prints_the_json_contract_and_saves_it(tmp_path, capsys):
    assert (
        main(["bench", "--device", "cpu", "--quick", "--format", "json", "--out", str(tmp_path)])
        == 0
    )
    bench = json.loads(capsys.readouterr().out)
    assert {"env", "copy_bandwidth_gbps", "results", "epoch_ratio_topk_over_spatial"} <= set(bench)
    assert bench["env"]["torch"] == torch.__version__ and bench["env"]["device_name"]
    assert bench["copy_bandwidth_gbps"] > 0 and bench["epoch_ratio_topk_over_spatial"] > 0
    results = bench["results"]
    assert len(results) == len(QUICK_CASES) * len(OPS) * len(PASSES)
    for record in results:
        assert set(record) >= RECORD_KEYS, record
        assert record["op"] in OPS and record["pass"] in PASSES
        assert record["device"] == "cpu" and record["dtype"] == "float32"
        assert len(record["shape"]) == 4 and all(isinstance(n, int) for n in record["shape"])
        assert record["median_s"] > 0 and record["iqr_s"] >= 0 and record["gbps"] > 0
        spread = record["iqr_s"] / record["median_s"]
        assert record["iqr_over_median"] == spread and record["noisy"] == (spread > NOISY)
    assert bench["indicative"] and bench["threads"] == 1
    load = bench["load_average"]
    assert len(load["before"]) == len(load["after"]) == 3 and load["cpus"] >= 1
    ratios = bench["op_ratios_topk_over_spatial"]
    assert len(ratios) == len(QUICK_CASES) * len(PASSES)
    assert all(r["ratio"] > 0 and r["rounds"] >= MIN_ROUNDS for r in ratios)
    saved = sorted(p.suffix for p in tmp_path.iterdir())
    assert saved == [".json", ".md"]
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["results"] == results
    markdown = next(tmp_path.glob("*.md")).read_text()
    assert "Top-k / spatial FP" in markdown and "indicative" in markdown.splitlines()[0]
    assert "Load average before: " in markdown
    assert ("| noisy |" in markdown) == any(r["noisy"] for r in [*results, *ratios])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_bench_on_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["bench", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cpu" in err
    assert not any(tmp_path.iterdir())


def test_bytes_and_flops_of_a_workload_by_hand():
    mnist = CASES[0]
    n, c, h, w = mnist.maps
    fp = workload("spatial_max", mnist, "fwd", torch.device("cpu"))
    assert fp.bytes == (n * c * h * w + n * c // 2 * h * w) * 4
    assert fp.flops == n * c // 2 * h * w  # one comparison per output
    topk = workload("topk", mnist, "fwdbwd", torch.device("cpu"))
    assert topk.bytes == 2 * fp.bytes and topk.flops == n * h * w * c * math.ceil(math.log2(c))
    conv = workload("conv_reduction", mnist, "fwd", torch.device("cpu"))
    weights = 16 * 16 * 9 + 16
    assert conv.shape == (100, 16, 28, 28)
    assert conv.bytes == (100 * 16 * 28 * 28 + weights + 100 * 16 * 28 * 28) * 4
    assert conv.flops == 100 * 16 * 28 * 28 * 16 * 9


def test_benchmark_suite_runs_once_per_benchmark():
    """CI check that benchmarks/ still runs: every benchmark once, on shrunk shapes."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "benchmarks", "--benchmark-disable",
         "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_interleaved_ratio_is_the_median_of_pairwise_ratios(monkeypatch):
    """A takes twice B's time, except every fifth call of A, which a busy machine
    interrupts for 50x as long: the ratio stays 2 (a mean of times would not)."""
    clock, calls = [0.0], [0]

    def a() -> None:
        calls[0] += 1
        clock[0] += 2e-3 * (50 if calls[0] % 5 == 0 else 1)

    def b() -> None:
        clock[0] += 1e-3

    monkeypatch.setattr(bench_module.time, "perf_counter", lambda: clock[0])
    ratio = interleaved_ratio(a, b, torch.device("cpu"), budget_s=1.0)
    assert ratio.median == 2.0 and ratio.n >= MIN_ROUNDS and not ratio.noisy


def test_quick_ratios_agree_between_back_to_back_runs():
    """The method, not a timing: the MNIST-shape top-k / spatial FP ratio of two
    back-to-back quick measurements agree within 2x on this (shared) machine."""
    cpu, case = torch.device("cpu"), QUICK_CASES[0]
    with timing_threads(cpu, quick=True):
        runs = [[topk_ratio(case, p, cpu, quick=True)["ratio"] for p in PASSES] for _ in range(2)]
    for first, second in zip(*runs, strict=True):
        assert 0.5 <= first / second <= 2, runs


def test_first_screen_has_only_our_output():
    """No torch warning (``No CUDA runtime is found, using CUDA_HOME=...``) before ours."""
    done = subprocess.run([sys.executable, "-m", "harness", "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("Tables:")
    assert done.stderr == "", done.stderr
