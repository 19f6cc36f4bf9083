"""What every task's training shares: the optimiser and learning-rate schedule a
protocol names, the divergence rule, when to evaluate within an epoch, and the result
a cell returns (history, per-epoch and per-pass times, metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.core.protocol import Protocol


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_times_s: list[float] = field(default_factory=list)
    test_times_s: list[float] = field(default_factory=list)
    diverged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. test images converted from grey


def make_optimizer(model: nn.Module, protocol: Protocol) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    options = dict(protocol.optimizer_options)
    if protocol.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=protocol.lr, weight_decay=protocol.weight_decay, **options
        )
    if protocol.optimizer in ("sgd", "rmsprop"):
        kind = torch.optim.SGD if protocol.optimizer == "sgd" else torch.optim.RMSprop
        return kind(
            params, lr=protocol.lr, momentum=protocol.momentum,
            weight_decay=protocol.weight_decay, **options,
        )  # fmt: skip
    raise ValueError(f"unknown optimizer {protocol.optimizer!r}")


def lr_for_epoch(protocol: Protocol, epoch: int) -> float:
    lr = protocol.lr
    for start, value in protocol.lr_steps:
        if epoch >= start:
            lr = value
    return lr


def eval_steps(steps_per_epoch: int, points: int) -> set[int]:
    points = max(1, min(points, steps_per_epoch))
    return {round((i + 1) * steps_per_epoch / points) for i in range(points)}
