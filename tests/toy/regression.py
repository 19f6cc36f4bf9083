"""A task the harness has never heard of: 1-D least-squares regression with a small MLP.

It is what a user's own package would hold: a registry architecture and variants, a
protocol, a Task with its own metric, registered through the ``harness.tasks`` entry
point group (see tests/test_toy_task.py, which installs that entry point).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.metrics import COST_CONVENTIONS, COSTS, Metric
from harness.core.protocol import Protocol
from harness.core.task import CellContext, RunOptions, Task, TrainingShape
from harness.train.loop import TrainResult, make_optimizer
from registry import list_archs, register_arch, register_variant


@dataclass(frozen=True)
class LineProtocol(Protocol):
    noise: float = 0.1  # std of the noise on y = 3x + 1


@dataclass
class LineData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    description: str = "points on y = 3x + 1 with Gaussian noise"
    input_shape: tuple[int, ...] = (1,)


MSE = Metric("mse", "MSE", "squared units", "{:.4f}", higher_is_better=False, logged=True)


class LineRegression(Task):
    name = "toy_regression"
    protocol_type = LineProtocol
    metrics = (MSE, *COSTS)
    conventions = (("mse: mean squared error on 200 held-out points.", ("mse",)), *COST_CONVENTIONS)

    def training_shape(self, protocol: Protocol) -> TrainingShape:
        return TrainingShape((1,), protocol.train_limit or 256, "points on a line")

    def open_data(
        self, protocol: LineProtocol, options: RunOptions, device: torch.device
    ) -> LineData:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(456, 1, generator=g) * 2 - 1
        y = 3 * x + 1 + protocol.noise * torch.randn(456, 1, generator=g)
        return LineData(x[:256], y[:256], x[256:], y[256:])

    def run_cell(
        self, model: nn.Module, data: LineData, protocol: LineProtocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        torch.manual_seed(config["seed"])
        optimizer = make_optimizer(model, protocol)
        result = TrainResult()
        for epoch in range(protocol.epochs):
            start = time.perf_counter()
            for i in range(0, len(data.train_x), protocol.batch_size):
                x, y = (
                    data.train_x[i : i + protocol.batch_size],
                    data.train_y[i : i + protocol.batch_size],
                )
                loss = nn.functional.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            result.epoch_times_s.append(time.perf_counter() - start)
            result.history.append({"epoch": epoch + 1, "loss": loss.item()})
        start = time.perf_counter()
        with torch.no_grad():
            mse = float(nn.functional.mse_loss(model(data.test_x), data.test_y))
        result.test_times_s.append(time.perf_counter() - start)
        result.metrics = {
            "mse": mse,
            "train_time_s": sorted(result.epoch_times_s)[len(result.epoch_times_s) // 2],
            "test_time_s": result.test_times_s[0],
        }
        return result, None


TASK = LineRegression()

if "toy_mlp" not in list_archs():

    @register_arch("toy_mlp")
    def toy_mlp(width: int = 8) -> nn.Module:
        return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))

    register_variant("toy_mlp.baseline", "toy_mlp", description="MLP, 2 hidden units", width=2)
    register_variant("toy_mlp.wide", "toy_mlp", description="MLP, 32 hidden units", width=32)
