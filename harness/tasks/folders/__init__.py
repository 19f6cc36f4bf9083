"""Classification from image folders through DataLoaders (ImageNet), torchrun-capable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task
from harness.data.imagenet import FolderData, open_folders
from harness.tasks.folders.engine import run_folder_cell
from harness.train import distributed
from harness.train.loop import TrainResult


class Folders(Task):
    name = "folders"
    distributed = True

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
        return run_folder_cell(
            model, data, protocol, config, store=ctx.store, device=ctx.device, desc=ctx.desc,
            runtime=ctx.options.runtime, save_weights=ctx.save_weights,
        )  # fmt: skip


TASK = Folders()
