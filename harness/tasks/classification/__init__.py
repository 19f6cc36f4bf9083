"""Classification on data held on the device (Tables 1-3): train, then test accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task
from harness.data.classification import ClassificationData, load_classification
from harness.tasks.classification.engine import train_classifier
from harness.train.loop import TrainResult


@dataclass(frozen=True)
class ClassificationProtocol(Protocol):
    """Adds the augmentation of training batches: a random crop after zero padding by
    ``crop_padding`` pixels (0: none), and random horizontal flips."""

    crop_padding: int = 0
    hflip: bool = False


class Classification(Task):
    name = "classification"
    protocol_type = ClassificationProtocol

    def open_data(
        self, protocol: ClassificationProtocol, options: RunOptions, device: torch.device
    ) -> ClassificationData:
        return load_classification(
            protocol.dataset, options.data_root, download=options.download,
            train_limit=protocol.train_limit, test_limit=protocol.test_limit,
        ).to(device)  # fmt: skip

    def run_cell(
        self, model: nn.Module, data: ClassificationData, protocol: ClassificationProtocol,
        config: dict[str, Any], ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        result = train_classifier(
            model, data, protocol, seed=config["seed"], device=ctx.device, desc=ctx.desc,
            runtime=ctx.options.runtime,
        )  # fmt: skip
        weights = ctx.store.save_weights(config, model.state_dict()) if ctx.save_weights else None
        return result, weights


TASK = Classification()
