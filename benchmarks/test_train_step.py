"""One training step (forward, backward, Adam) of each Table 1 row at the paper's batch,
as the harness trains it (batches cut and prepared on the device) and as a stock
DataLoader loop does; then the two interleaved, as images/s and their ratio, with
IQR and noisy flag (:mod:`harness.tools.throughput`). The figures go to each record's
``extra_info``; ``--benchmark-json`` keeps them."""

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from harness.core.runtime import Runtime
from harness.tables.paper import TABLE1
from harness.tools.throughput import (
    WORKLOADS,
    StockLoop,
    default_workers,
    harness_step,
    measure,
    summary,
)
from harness.train.measure import synchronize

WORK = WORKLOADS["table1"]


def synchronised(step: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``step`` and a wait for the device: what pytest-benchmark times per call."""

    def call() -> None:
        step()
        synchronize(device)

    return call


@pytest.mark.parametrize("variant", TABLE1.rows)
@pytest.mark.parametrize("path", ["harness", "stock"])
def test_train_step(benchmark, device, quick, variant, path):
    protocol = replace(WORK.protocol, batch_size=10 if quick else WORK.protocol.batch_size)
    data = WORK.data(4 * protocol.batch_size)
    workers = default_workers(device)
    benchmark.group = f"table1 train step, {variant}"
    benchmark.extra_info.update(images_per_call=protocol.batch_size, path=path,
                                workers=workers if path == "stock" else None)  # fmt: skip
    if path == "harness":
        step = harness_step(variant, data.to(device), protocol, device, Runtime())
        benchmark(synchronised(step, device))
        return
    with StockLoop(variant, data, protocol, device, workers).running() as step:
        benchmark(synchronised(step, device))


def test_images_per_s_against_the_stock_loop(benchmark, device, quick):
    """Interleaved rounds, images/s of each side and the ratio (run once)."""
    result = benchmark.pedantic(measure, args=("table1", device), kwargs={"quick": quick},
                                rounds=1, iterations=1)  # fmt: skip
    benchmark.group = "table1 train step, images/s: harness vs stock"
    print(summary(result))
    benchmark.extra_info.update({k: result[k] for k in ("harness", "stock", "ratio", "workers")})
    assert result["harness"]["images_per_s"] > 0 and result["stock"]["images_per_s"] > 0
