"""``python -m harness bench`` and the pytest-benchmark suite stay runnable."""

import json
import math
import multiprocessing
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import registry.bitonic
from harness.cli import main
from harness.core.machine import DISTURBED, QUIET
from harness.data.classification import ClassificationData
from harness.tools import bench as bench_module
from harness.tools import throughput
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
    path = "compiled kernel" if registry.bitonic.KERNEL else "tensor ops (the compiled kernel"
    assert bench["env"]["topk"].startswith(path) and f"(bitonic: {path}" in markdown
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


def test_the_stock_loops_transforms_augment_as_the_harness_does():
    """Table 2's protocol (4 pixels of zero padding, random crop, flip, CIFAR-10's
    normalisation): every image the stock transforms make is one of the harness's crops
    and flips of it, normalised alike, and different draws do occur."""
    from harness.tasks.classification.augment import InputPipeline, crop_flip

    work = throughput.WORKLOADS["vgg16"]
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=gen)
    data = ClassificationData(image, torch.zeros(1, dtype=torch.int64), image, image[:, 0, 0, 0],
                              "one image", (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))  # fmt: skip
    prepare = InputPipeline(data, work.protocol, channels_last=False)
    draws = torch.tensor([[top, left, flip] for top in range(9) for left in range(9)
                          for flip in (0, 1)])  # fmt: skip
    every = prepare(crop_flip(image.expand(len(draws), -1, -1, -1), draws, padding=4))
    transform = throughput.stock_transform(work.protocol, data)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        made = transform(image[0])
        close = (every - made).abs().amax(dim=(1, 2, 3)) < 1e-5
        assert close.any(), seed
        seen.add(int(close.nonzero()[0]))
    assert len(seen) > 1


def test_images_per_s_of_both_loops_and_their_interleaved_ratio(tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["--workload", "table1", "--device", "cpu", "--quick", "--rounds", "2", "--steps",
            "1", "--batch-size", "4", "--workers", "1", "--out", str(out)]  # fmt: skip
    assert throughput.main(argv) == 0
    assert not multiprocessing.active_children()  # the DataLoader's worker is gone
    line, data_line = capsys.readouterr().out.splitlines()[:2]
    assert line.startswith("mnist.fp_max_s2 batch 4: harness ") and "(1 workers)" in line
    result = json.loads(out.read_text())
    harness, stock = (result[side]["images_per_s_each_round"] for side in ("harness", "stock"))
    assert len(harness) == len(stock) == 2 and min(harness + stock) > 0
    ratio = result["ratio"]
    assert math.isclose(
        ratio["ratio"], statistics.median(h / s for h, s in zip(harness, stock, strict=True))
    )
    assert ratio["noisy"] == (ratio["iqr_over_median"] > NOISY)
    assert result["threads"] == 1 and result["quick"] and result["env"]["device"] == "cpu"
    assert result["harness"]["epoch_s"] == 60_000 / result["harness"]["images_per_s"]
    alone = result["data_path"]  # the data paths alone, in turns
    assert alone["images_per_round"] == throughput.DATA_PATH_IMAGES // 4 * 4
    assert min(alone["harness"]["images_per_s"], alone["stock"]["images_per_s"]) > 0
    assert data_line.startswith("data path alone (table1, batch 4): harness ")
    for side in ("harness", "stock"):  # the machine's state over each block, and its reading
        assert len(result[side]["states"]) == 2 and result[side]["machine"] in (QUIET, DISTURBED)
        assert f"{side} {result[side]['machine']}" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_throughput_on_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert throughput.main(["--device", "cuda", "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cpu" in err
    assert not any(tmp_path.iterdir())


def test_a_stock_block_fits_in_one_epoch_after_its_workers_prefetch():
    """The stock side's images cover its warm-up (its own plus what the workers prefetch)
    and its timed steps in one epoch: no block waits for a new epoch's workers."""
    plan, workers = throughput.Plan(rounds=1, steps=3, warmup=2), 2
    work = throughput.WORKLOADS["table1"]
    protocol = replace(work.protocol, batch_size=4)
    data = work.data(plan.images(protocol.batch_size, workers))
    stock = throughput.StockLoop(work.variant, data, protocol, torch.device("cpu"), workers)
    assert len(stock.loader) == plan.warmup + throughput.PREFETCH * workers + plan.steps
    assert stock.loader.prefetch_factor == throughput.PREFETCH
