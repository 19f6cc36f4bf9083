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
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from harness.core.runtime import Runtime, diverged
from harness.data.classification import ClassificationData
from harness.tasks.classification.augment import InputPipeline, as_input
from harness.train.loop import TrainResult, eval_steps, lr_for_epoch, make_optimizer
from harness.train.measure import Stopwatch, median_time

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
