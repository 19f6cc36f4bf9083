"""Denoising (Tables 4-8): one model per noise level, tested image by image; classical
methods are tested without training, in a pool of worker processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task
from harness.tasks.denoising.engine import (
    DenoiseData,
    WorkerPool,
    load_denoise_data,
    run_denoise_cell,
)
from harness.train.loop import TrainResult


@dataclass(frozen=True)
class DenoiseProtocol(Protocol):
    """Adds the test set (``harness/image_data.TEST_SETS``; several make a table with one
    block of rows per set), the side of the square training patches (0: whole images)
    and a centre crop of the test images (0: full size)."""

    test_set: str | tuple[str, ...] = ""
    patch_size: int = 0
    test_crop: int = 0
    # train one model per row on noise levels drawn uniformly from this (low, high) range,
    # one per image, and test it at every sigma of the table (empty: one model per sigma,
    # as the paper trains)
    train_sigmas: tuple[int, int] | tuple[()] = ()

    @property
    def test_sets(self) -> tuple[str, ...]:
        return (self.test_set,) if isinstance(self.test_set, str) else self.test_set


class Denoising(Task):
    name = "denoising"
    protocol_type = DenoiseProtocol
    accepts_test_dir = True

    def __init__(self) -> None:
        self._pool: WorkerPool | None = None

    def blocks(self, protocol: DenoiseProtocol, test_dir: Path | None) -> tuple[str | None, ...]:
        sets = protocol.test_sets
        return sets if test_dir is None and len(sets) > 1 else (None,)

    def open_data(
        self, protocol: DenoiseProtocol, options: RunOptions, device: torch.device
    ) -> DenoiseData:
        return load_denoise_data(
            protocol, options.data_root, download=options.download, device=device,
            test_dir=options.test_dir,
        )  # fmt: skip

    def _workers(self, workers: int) -> WorkerPool:
        """One pool per process, started on first use and kept for the process's cells."""
        if self._pool is None or self._pool.workers != workers:
            self.close(interrupted=False)
            self._pool = WorkerPool(workers).__enter__()
        return self._pool

    def run_cell(
        self, model: nn.Module, data: DenoiseData, protocol: DenoiseProtocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        return run_denoise_cell(
            model, data, protocol, config, store=ctx.store, device=ctx.device, desc=ctx.desc,
            pool=self._workers(ctx.options.workers), retime=ctx.times_training,
            trained_since=ctx.options.started if ctx.options.force else None,
        )  # fmt: skip

    def close(self, interrupted: bool) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.__exit__(KeyboardInterrupt if interrupted else None, None, None)


TASK = Denoising()
