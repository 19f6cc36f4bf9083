"""A cell that does nothing, so that what remains of its time is the executor's own cost.

Its cells go the whole way a real cell goes (planning, the lease, the worker, the data
cache, the record written to the store); only training is empty. The benchmark
``benchmarks/executor_overhead.py`` and ``tests/test_executors.py`` load this module as a
plugin (the cells' configs name it, so Ray workers import it too).

Each record tells where the cell ran and how many times that process opened the data, so
a test can check that a worker serves several cells and opens the data once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task, TrainingShape, register_task
from harness.tables.paper import TableSpec
from harness.train.loop import TrainResult
from registry import list_archs, register_arch, register_variant

NAME = "noop"
MODULE = __name__  # the plugin name cells carry, so that workers import this module
_OPENED = {"count": 0}  # how many times this process opened the data


@dataclass
class NoData:
    description: str = "no data"
    input_shape: tuple[int, ...] = (1,)


class NoopTask(Task):
    """Opens nothing and trains nothing; reports where it ran."""

    name = NAME
    metrics = ()
    conventions = ()

    def training_shape(self, protocol: Protocol) -> TrainingShape:
        return TrainingShape((1,), 0, "nothing")

    def test_images(self, protocol: Protocol, test_set: str) -> tuple[int, int]:
        return 0, 0

    def open_data(self, protocol: Protocol, options: RunOptions, device: torch.device) -> NoData:
        _OPENED["count"] += 1
        return NoData()

    def run_cell(
        self, model: nn.Module, data: NoData, protocol: Protocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        return TrainResult(metrics={"data_opened": _OPENED["count"], "pid": os.getpid()}), None


TASK = register_task(NoopTask())

if "noop_net" not in list_archs():

    @register_arch("noop_net")
    def noop_net() -> nn.Module:
        return nn.Linear(1, 1)

    register_variant("noop_net.baseline", "noop_net", description="one weight, never trained")


def noop_table(cells: int) -> TableSpec:
    """A table of ``cells`` no-op cells (one row, ``cells`` seeds, profile ``smoke``)."""
    return TableSpec(
        name="noop",
        title="Cells that do nothing",
        rows=("noop_net.baseline",),
        columns=(),
        protocols={"smoke": Protocol(dataset="none", epochs=0, batch_size=1)},
        task=NAME,
        save_weights=False,
        seeds=cells,
        plugins=(MODULE,),
    )
