"""Classification on data held on the device (Tables 1-3): train, then test accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.metrics import COST_CONVENTIONS, COSTS, Metric
from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task, TrainingShape, dataset_shape
from harness.data.classification import DATASETS, ClassificationData, load_classification
from harness.tasks.classification.protocol import NAME, ClassificationProtocol

if TYPE_CHECKING:  # the engine imports torch: tables and reports read this module without it
    import torch
    from torch import nn

    from harness.train.loop import TrainResult

ACCURACY = Metric("accuracy", "Accuracy", "fraction", "{:.4f}", higher_is_better=True, logged=True)
ACCURACY_CONVENTION = "accuracy: fraction of the whole test set classified correctly."


class Classification(Task):
    name = NAME
    protocol_type = ClassificationProtocol
    metrics = (ACCURACY, *COSTS)
    conventions = ((ACCURACY_CONVENTION, ("accuracy",)), *COST_CONVENTIONS)

    def training_shape(self, protocol: Protocol) -> TrainingShape:
        return dataset_shape(DATASETS[protocol.dataset], protocol)

    def test_images(self, protocol: Protocol, test_set: str) -> tuple[int, int]:
        info = DATASETS[protocol.dataset]
        count = min(info.test_size, protocol.test_limit or info.test_size)
        return count, math.prod(info.shape[1:])

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
        from harness.tasks.classification.engine import train_classifier

        result = train_classifier(
            model, data, protocol, seed=config["seed"], device=ctx.device, desc=ctx.desc,
            runtime=ctx.options.runtime,
        )  # fmt: skip
        weights = ctx.store.save_weights(config, model.state_dict()) if ctx.save_weights else None
        return result, weights


TASK = Classification()
