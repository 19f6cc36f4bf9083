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

import math
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .augment import InputPipeline, as_input
from .data import ClassificationData
from .measure import Stopwatch, median_time
from .protocol import Protocol

if TYPE_CHECKING:
    from .tasks.classification import ClassificationProtocol

_STATS_BATCH = 100  # fixed test images for the hidden-layer statistics
AMP_MODES = ("off", "bf16")


@dataclass(frozen=True)
class Runtime:
    """How cells execute, not what they compute: recorded in each record, not hashed.

    A cell done in fp32 counts as done for a later bf16 run and the other way round
    (rerun with --force to redo it); reports list the settings of the records used.
    """

    amp: str = "off"  # "bf16": forward and loss under bfloat16 autocast
    compile: bool = False  # torch.compile the model for training and testing
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; choose one of {', '.join(AMP_MODES)}")

    def autocast(self, device: torch.device) -> AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16")

    @property
    def label(self) -> str:
        """E.g. ``bf16 autocast, compiled, channels_last``."""
        parts = ["bf16 autocast" if self.amp == "bf16" else "fp32"]
        parts += ["compiled"] * self.compile + ["channels_last"] * self.channels_last
        return ", ".join(parts)


# A mean training loss above this, or not finite, marks a run as diverged. Every loss
# trained here starts orders of magnitude below it (cross-entropy over <= 1000 classes
# about 7, the denoisers' noise MSE on 0..1 pixels below 1), so only a blow-up exceeds it.
DIVERGED_LOSS = 1e6


def diverged(loss: float) -> bool:
    """Whether a mean training loss says the run has diverged (see :data:`DIVERGED_LOSS`)."""
    return not math.isfinite(loss) or abs(loss) > DIVERGED_LOSS


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


def eval_steps(steps_per_epoch: int, points: int) -> set[int]:
    points = max(1, min(points, steps_per_epoch))
    return {round((i + 1) * steps_per_epoch / points) for i in range(points)}


def train_steps(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: InputPipeline,
    data: ClassificationData,
    epoch: tuple[Tensor, Tensor | None],
    steps: range,
    batch_size: int,
    autocast: AbstractContextManager,
) -> list[Tensor]:
    """Run ``steps`` of an epoch given as (sample order, augmentation draws); their losses."""
    order, draws = epoch
    losses = []
    for i in steps:
        part = slice(i * batch_size, (i + 1) * batch_size)
        idx = order[part]
        x = inputs.train(data.train_x[idx], None if draws is None else draws[part])
        with autocast:
            loss = F.cross_entropy(net(x), data.train_y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def draw_epoch(
    inputs: InputPipeline, n: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """An epoch's sample order and augmentation draws, from ``generator``, on ``device``."""
    order = torch.randperm(n, generator=generator).to(device)
    draws = inputs.draw(n, generator)
    return order, None if draws is None else draws.to(device)


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
    result = TrainResult()
    inputs = InputPipeline(data, protocol, channels_last=runtime.channels_last)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if runtime.compile else model
    optimizer = make_optimizer(model, protocol)
    autocast = runtime.autocast(device)
    test = partial(evaluate, net, data.test_x, data.test_y, protocol.test_batch_size, inputs)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = len(data.train_x)
    steps_per_epoch = math.ceil(n / protocol.batch_size)
    eval_at = eval_steps(steps_per_epoch, protocol.eval_points_per_epoch)
    stats_batch = data.test_x[:_STATS_BATCH]
    model.train()
    bar = tqdm(
        total=protocol.epochs * steps_per_epoch, desc=desc, leave=False, unit="step", disable=None
    )
    for epoch in range(protocol.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_for_epoch(protocol, epoch)
        epoch_draws = draw_epoch(inputs, n, gen, data.train_x.device)
        watch = Stopwatch(device)
        step = 0
        while step < steps_per_epoch:
            stop = min(s for s in eval_at if s > step)
            with watch:
                losses = train_steps(
                    net, optimizer, inputs, data, epoch_draws, range(step, stop),
                    protocol.batch_size, autocast,
                )  # fmt: skip
                step = stop
            bar.update(len(losses))
            mean_loss = torch.stack(losses).float().mean().item()
            with autocast:
                accuracy = test()
            if diverged(mean_loss):
                result.diverged = True
            result.history.append(
                {
                    "epoch": epoch + step / steps_per_epoch,
                    "step": epoch * steps_per_epoch + step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": mean_loss,
                    "test_accuracy": accuracy,
                    **hidden_stats(model, stats_batch, inputs),
                }
            )  # fmt: skip
            bar.set_postfix(
                loss=f"{mean_loss:.3f}", acc=f"{result.history[-1]['test_accuracy']:.4f}"
            )
            if result.diverged:
                break
        result.epoch_times_s.append(watch.elapsed)
        if result.diverged:
            break
    bar.close()

    with autocast:
        test_time, result.test_times_s = median_time(test, device, repeats=protocol.test_repeats)
        accuracy = test()
    result.metrics = {
        "accuracy": accuracy,
        "train_time_s": statistics.median(result.epoch_times_s),
        "test_time_s": test_time,
    }
    return result
