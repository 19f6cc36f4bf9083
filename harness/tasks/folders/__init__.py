"""Classification from image folders through DataLoaders (ImageNet), torchrun-capable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.metrics import COST_CONVENTIONS, COSTS, Metric
from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task, TrainingShape, dataset_shape
from harness.data.imagenet import FOLDER_SETS, FolderData, open_folders
from harness.tasks.folders.protocol import NAME
from harness.train import distributed

if TYPE_CHECKING:  # the engine imports torch: tables and reports read this module without it
    import torch
    from torch import nn

    from harness.train.loop import TrainResult

TOP1 = Metric("top1", "Top-1", "fraction", "{:.5f}", higher_is_better=True, logged=True)
TOP5 = Metric("top5", "Top-5", "fraction", "{:.5f}", higher_is_better=True, logged=True)
TOP_CONVENTION = (
    "top-1 / top-5: fraction of the validation images whose label is the first / among the "
    "first five predicted."
)


class Folders(Task):
    name = NAME
    distributed = True
    holds_data = False  # DataLoaders stream the images from disk
    metrics = (TOP1, TOP5, *COSTS)
    conventions = (*COST_CONVENTIONS, (TOP_CONVENTION, ("top1", "top5")))

    def training_shape(self, protocol: Protocol) -> TrainingShape:
        return dataset_shape(FOLDER_SETS[protocol.dataset], protocol)

    def open_data(
        self, protocol: Protocol, options: RunOptions, device: torch.device
    ) -> FolderData:
        """Rank 0 first (it may write the smoke fixture), then the other torchrun ranks."""
        main = distributed.world().is_main
        if not main:
            distributed.barrier()
        data = open_folders(protocol.dataset, options.data_root)
        if main:
            distributed.barrier()
        return data

    def run_cell(
        self, model: nn.Module, data: FolderData, protocol: Protocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        from harness.tasks.folders.engine import run_folder_cell

        return run_folder_cell(
            model, data, protocol, config, store=ctx.store, device=ctx.device, desc=ctx.desc,
            runtime=ctx.options.runtime, save_weights=ctx.save_weights,
        )  # fmt: skip


TASK = Folders()
