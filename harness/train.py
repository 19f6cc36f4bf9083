"""The classification training loop: data resident on the device, timed per epoch.

The whole dataset sits on the device as uint8 and batches are cut from it by index,
so no DataLoader or host-to-device copy sits inside the timed region. Test accuracy
is sampled several times per epoch (Figure 4) together with the mean and variance
of the last hidden layer on a fixed test batch (Figure 6); evaluation time is kept
out of the training time.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import ClassificationData
from .measure import Stopwatch, median_time
from .tables import Protocol

_STATS_BATCH = 100  # fixed test images for the hidden-layer statistics


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_times_s: list[float] = field(default_factory=list)
    test_times_s: list[float] = field(default_factory=list)
    diverged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


def as_input(batch: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]."""
    return batch.float().div_(255)


def make_optimizer(model: nn.Module, protocol: Protocol) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if protocol.optimizer == "adam":
        return torch.optim.Adam(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
        )
    raise ValueError(f"unknown optimizer {protocol.optimizer!r}")


def lr_for_epoch(protocol: Protocol, epoch: int) -> float:
    lr = protocol.lr
    for start, value in protocol.lr_steps:
        if epoch >= start:
            lr = value
    return lr


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Accuracy (fraction) over all of ``x``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(as_input(x[start : start + batch_size]))
        correct += (logits.argmax(1) == y[start : start + batch_size]).sum()
    model.train(was_training)
    return float(correct) / len(x)


@torch.no_grad()
def hidden_stats(model: nn.Module, batch: Tensor) -> dict[str, float]:
    """Mean and variance of the model's last hidden layer, if it names one."""
    hidden = getattr(model, "hidden", None)
    if hidden is None:
        return {}
    captured: list[Tensor] = []
    handle = hidden.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        model(as_input(batch))
    finally:
        handle.remove()
        model.train(was_training)
    act = captured[0].float()
    return {"hidden_mean": act.mean().item(), "hidden_var": act.var().item()}


def _eval_steps(steps_per_epoch: int, points: int) -> set[int]:
    points = max(1, min(points, steps_per_epoch))
    return {round((i + 1) * steps_per_epoch / points) for i in range(points)}


def train_classifier(
    model: nn.Module,
    data: ClassificationData,
    protocol: Protocol,
    *,
    seed: int,
    device: torch.device,
    desc: str = "",
) -> TrainResult:
    """Train ``model`` on ``data`` (already on ``device``) and test it; see module doc."""
    result = TrainResult()
    optimizer = make_optimizer(model, protocol)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = len(data.train_x)
    steps_per_epoch = math.ceil(n / protocol.batch_size)
    eval_at = _eval_steps(steps_per_epoch, protocol.eval_points_per_epoch)
    stats_batch = data.test_x[:_STATS_BATCH]
    model.train()
    bar = tqdm(
        total=protocol.epochs * steps_per_epoch, desc=desc, leave=False, unit="step", disable=None
    )
    for epoch in range(protocol.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_for_epoch(protocol, epoch)
        order = torch.randperm(n, generator=gen).to(data.train_x.device)
        watch = Stopwatch(device)
        losses: list[Tensor] = []
        step = 0
        while step < steps_per_epoch:
            stop = min(s for s in eval_at if s > step)
            with watch:
                for i in range(step, stop):
                    idx = order[i * protocol.batch_size : (i + 1) * protocol.batch_size]
                    loss = F.cross_entropy(model(as_input(data.train_x[idx])), data.train_y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.detach())
                step = stop
            bar.update(len(losses))
            mean_loss = torch.stack(losses).mean().item()
            losses.clear()
            if not math.isfinite(mean_loss):
                result.diverged = True
            result.history.append(
                {
                    "epoch": epoch + step / steps_per_epoch,
                    "step": epoch * steps_per_epoch + step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": mean_loss,
                    "test_accuracy": evaluate(model, data.test_x, data.test_y, protocol.test_batch_size),
                    **hidden_stats(model, stats_batch),
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

    test_time, result.test_times_s = median_time(
        lambda: evaluate(model, data.test_x, data.test_y, protocol.test_batch_size),
        device,
        repeats=protocol.test_repeats,
    )
    result.metrics = {
        "accuracy": evaluate(model, data.test_x, data.test_y, protocol.test_batch_size),
        "train_time_s": statistics.median(result.epoch_times_s),
        "test_time_s": test_time,
    }
    return result
