"""Classification on device-resident data, trained by the shared loop (``train/loop.py``).

The whole dataset sits on the device as uint8 and batches are cut from it by index,
so no DataLoader or host-to-device copy sits inside the timed region; augmentation
and normalisation happen there too, per batch (``augment.py``). How a cell executes
(bf16 autocast, torch.compile, channels_last) is a :class:`Runtime`. Test accuracy
is sampled several times per epoch (Figure 4) together with the mean and variance
of the last hidden layer on a fixed test batch (Figure 6); evaluation time is kept
out of the training time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness.core.runtime import Runtime
from harness.data.classification import ClassificationData
from harness.tasks.classification.augment import InputPipeline, as_input
from harness.train.loop import Steps, TrainResult, fit, make_optimizer
from harness.train.measure import MachineWatch, median_time

if TYPE_CHECKING:
    from harness.tasks.classification.protocol import ClassificationProtocol


_STATS_BATCH = 100  # fixed test images for the hidden-layer statistics


Prepare = Callable[[Tensor], Tensor]


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int, prepare: Prepare = as_input
) -> float:
    """Accuracy (fraction) over all of ``x`` (uint8 images, made inputs by ``prepare``)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(prepare(x[start : start + batch_size]))
        correct += (logits.argmax(1) == y[start : start + batch_size]).sum()
    model.train(was_training)
    return float(correct) / len(x)


@torch.no_grad()
def hidden_stats(model: nn.Module, batch: Tensor, prepare: Prepare = as_input) -> dict[str, float]:
    """Mean and variance of the model's last hidden layer, if it names one."""
    hidden = getattr(model, "hidden", None)
    if hidden is None:
        return {}
    captured: list[Tensor] = []
    handle = hidden.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        model(prepare(batch))
    finally:
        handle.remove()
        model.train(was_training)
    act = captured[0].float()
    return {"hidden_mean": act.mean().item(), "hidden_var": act.var().item()}


def draw_epoch(
    inputs: InputPipeline, n: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """An epoch's sample order and augmentation draws, from ``generator``, on ``device``."""
    order = torch.randperm(n, generator=generator).to(device)
    draws = inputs.draw(n, generator)
    return order, None if draws is None else draws.to(device)


class ClassifierSteps(Steps):
    """Batches cut by index from device-resident uint8 images, augmented on the device;
    test accuracy and the hidden layer's statistics at each evaluation point."""

    def __init__(
        self, model: nn.Module, net: nn.Module, data: ClassificationData,
        protocol: ClassificationProtocol, inputs: InputPipeline, seed: int,
        autocast: AbstractContextManager,
    ) -> None:  # fmt: skip
        """``net`` is ``model`` as it runs (compiled or not); hooks go on ``model``."""
        self.data, self.inputs, self.batch_size = data, inputs, protocol.batch_size
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(data.train_x) / protocol.batch_size)
        self.test = partial(
            evaluate, net, data.test_x, data.test_y, protocol.test_batch_size, inputs
        )
        self.model, self.autocast = model, autocast

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order, draws = draw_epoch(
            self.inputs, len(self.data.train_x), self.generator, self.data.train_x.device
        )
        return self._batches(order, draws)

    def _batches(self, order: Tensor, draws: Tensor | None) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(self.steps_per_epoch):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[part]
            draw = None if draws is None else draws[part]
            yield self.inputs.train(self.data.train_x[idx], draw), self.data.train_y[idx]

    def loss(self, net: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(net(x), y)

    def probe(self) -> dict[str, float]:
        with self.autocast:
            accuracy = self.test()
        stats = hidden_stats(self.model, self.data.test_x[:_STATS_BATCH], self.inputs)
        return {"test_accuracy": accuracy, **stats}


def train_classifier(
    model: nn.Module,
    data: ClassificationData,
    protocol: ClassificationProtocol,
    *,
    seed: int,
    device: torch.device,
    desc: str = "",
    runtime: Runtime = Runtime(),
) -> TrainResult:
    """Train ``model`` on ``data`` (already on ``device``) and test it; see module doc."""
    inputs = InputPipeline(data, protocol, channels_last=runtime.channels_last)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if runtime.compile else model
    autocast = runtime.autocast(device)
    steps = ClassifierSteps(model, net, data, protocol, inputs, seed, autocast)
    optimizer = make_optimizer(model, protocol)
    result = fit(net, optimizer, steps, protocol, device=device, autocast=autocast, desc=desc)
    with autocast, MachineWatch(device) as seen:
        test_time, result.test_times_s = median_time(
            steps.test, device, repeats=protocol.test_repeats
        )
        accuracy = steps.test()
    result.test_machine = seen.state
    result.metrics = {
        "accuracy": accuracy,
        "train_time_s": statistics.median(result.epoch_times_s),
        "test_time_s": test_time,
    }
    return result
