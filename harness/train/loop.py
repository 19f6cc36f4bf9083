"""The one training loop every task shares (:func:`fit`), with the optimiser and
learning-rate schedule a protocol names, when to evaluate within an epoch, and the result
a cell returns (history, per-epoch and per-pass times, metrics). A task supplies only its
:class:`Steps`: batches, loss and what it measures at an evaluation point."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from harness.core.protocol import Protocol
from harness.core.runtime import diverged
from harness.train.measure import MachineWatch, Stopwatch, timing_fields


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_times_s: list[float] = field(default_factory=list)
    test_times_s: list[float] = field(default_factory=list)
    diverged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. test images converted from grey
    # the machine's state over each timed epoch and over the test passes
    epoch_machine: list[dict[str, Any]] = field(default_factory=list)
    test_machine: dict[str, Any] | None = None

    def timing(self) -> dict[str, Any]:
        """The record's ``timing`` (spread and machine state of each phase)."""
        return timing_fields(
            self.epoch_times_s, self.epoch_machine, self.test_times_s, self.test_machine
        )


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


class Steps:
    """What one task plugs into :func:`fit`: its batches, its loss, what it measures at an
    evaluation point. The loop owns the rest (schedule, autocast, timing, divergence,
    history), so every task's training is timed and logged the same way."""

    steps_per_epoch: int
    eval_points: int | None = None  # per epoch; None: the protocol's eval_points_per_epoch

    def epoch(self, epoch: int) -> Iterator[Any]:
        """This epoch's batches. Work done in this call (drawing the order) is not timed;
        preparing each batch as the iterator yields it is, as part of training."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: Any) -> Tensor:
        raise NotImplementedError

    def probe(self) -> dict[str, Any]:
        """Measurements at an evaluation point, outside the timed region (test accuracy)."""
        return {}

    def summary(self, entry: dict[str, Any], losses: list[Tensor]) -> dict[str, Any]:
        """An evaluation point's history entry; a task may extend it (e.g. sums over ranks)."""
        return entry


def train_step(
    net: nn.Module, optimizer: torch.optim.Optimizer, steps: Steps, batch: Any,
    autocast: AbstractContextManager,
) -> Tensor:  # fmt: skip
    """One optimiser step on ``batch``; its (detached) loss."""
    with autocast:
        loss = steps.loss(net, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def fit(
    net: nn.Module, optimizer: torch.optim.Optimizer, steps: Steps, protocol: Protocol, *,
    device: torch.device, autocast: AbstractContextManager | None = None, desc: str = "",
    result: TrainResult | None = None, start: int = 0,
    after_epoch: Callable[[int, TrainResult], None] | None = None, show: bool = True,
) -> TrainResult:  # fmt: skip
    """Train from epoch ``start`` (a resumed ``result`` goes on) to the protocol's last.

    Each epoch's time is the synchronised wall time of its steps and of preparing their
    batches, never of the evaluations between them. Training stops at the first
    evaluation point whose mean loss diverged. ``after_epoch`` runs once an epoch's time
    is known (a checkpoint)."""
    result = result if result is not None else TrainResult()
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    per_epoch = steps.steps_per_epoch
    points = sorted(eval_steps(per_epoch, steps.eval_points or protocol.eval_points_per_epoch))
    bar = tqdm(total=(protocol.epochs - start) * per_epoch, desc=desc, leave=False, unit="step",
               disable=None if show else True)  # fmt: skip
    net.train()
    for epoch in range(start, protocol.epochs):
        lr = lr_for_epoch(protocol, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches, watch, done = steps.epoch(epoch), Stopwatch(device), 0
        seen = MachineWatch(device).start()
        for point in points:
            with watch:
                losses = [train_step(net, optimizer, steps, batch, autocast)
                          for batch in itertools.islice(batches, point - done)]  # fmt: skip
            bar.update(len(losses))
            done = point
            entry = steps.summary(
                {"epoch": epoch + point / per_epoch, "step": epoch * per_epoch + point, "lr": lr,
                 "train_loss": torch.stack(losses).float().mean().item()},
                losses,
            )  # fmt: skip
            entry.update(steps.probe())
            result.history.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in _SHOWN})
            if diverged(entry["train_loss"]):
                result.diverged = True
                break
        result.epoch_times_s.append(watch.elapsed)
        result.epoch_machine.append(seen.stop())
        if after_epoch is not None:
            after_epoch(epoch, result)
        if result.diverged:
            break
    bar.close()
    return result


_SHOWN = ("train_loss", "test_accuracy")  # the progress bar's figures, where a task has them
