"""The classification training loop: data resident on the device, timed per epoch.

The whole dataset sits on the device as uint8 and batches are cut from it by index,
so no DataLoader or host-to-device copy sits inside the timed region; augmentation
and normalisation happen there too, per batch (``augment.py``). How a cell executes
(bf16 autocast, torch.compile, channels_last) is a :class:`Runtime`. Test accuracy
is sampled several times per epoch (Figure 4) together with the mean and variance
of the last hidden layer on a fixed test batch (Figure 6); evaluation time is kept
out of the training time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.core.protocol import Protocol

if TYPE_CHECKING:
    pass


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
