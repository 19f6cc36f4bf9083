"""``python -m harness bench`` and the pytest-benchmark suite stay runnable."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.bench import CASES, OPS, PASSES, QUICK_CASES, workload
from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"op", "shape", "pass", "device", "dtype", "median_s", "iqr_s", "gbps"}


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
    saved = sorted(p.suffix for p in tmp_path.iterdir())
    assert saved == [".json", ".md"]
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["results"] == results
    assert "Top-k / spatial FP" in next(tmp_path.glob("*.md")).read_text()


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
