"""FGSM against an ImageNet classifier, then the denoiser (section 4.2(D)): no training."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.metrics import COSTS, Metric
from harness.core.task import CellContext, RunOptions, Task, TrainingShape, dataset_shape
from harness.data.imagenet import FOLDER_SETS
from harness.tasks.adversarial.protocol import NAME, AttackProtocol
from registry import create_model, list_variants, variant_info

if TYPE_CHECKING:  # the engine imports torch: tables and reports read this module without it
    import torch
    from torch import nn

    from harness.tasks.adversarial.engine import AttackData, Attackers
    from harness.train.loop import TrainResult


@functools.cache
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _attackers(protocol: AttackProtocol, weights: Path | None) -> Attackers:
    from harness.tasks.adversarial.engine import prepare_attack

    return prepare_attack(protocol, weights)


def _top1(name: str, header: str) -> Metric:
    return Metric(name, header, "fraction", "{:.4f}", higher_is_better=True, logged=True)


class Adversarial(Task):
    name = NAME
    protocol_type = AttackProtocol
    accepts_denoiser_weights = True
    metrics = (
        _top1("top1_clean", "Top-1 clean"),
        _top1("top1_adversarial", "Top-1 FGSM"),
        _top1("top1_denoised", "Top-1 FGSM + denoiser"),
        *COSTS,
    )
    conventions = ()
    notes_label = "Weights and images"

    def protocol_line(self, profile: str, protocol: dict[str, Any]) -> str:
        return (
            f"Protocol (`{profile}`): FGSM epsilon {protocol['epsilon']:.6g}, no training. "
            f"{protocol['choices']}"
        )

    def training_shape(self, protocol: AttackProtocol) -> TrainingShape:
        return dataset_shape(FOLDER_SETS[protocol.dataset], protocol)

    def check(self, protocol: AttackProtocol, options: RunOptions) -> None:
        weights = options.denoiser_weights
        if weights is not None and not Path(weights).is_file():
            raise UserError(f"--denoiser-weights {weights} is not a file")
        _attackers(protocol, weights)  # a missing or unfit file is said before any data is read

    def extra_config(self, protocol: AttackProtocol, options: RunOptions) -> dict[str, Any]:
        """A different weights file is a different cell: never reuse a record of another."""
        weights = options.denoiser_weights
        if weights is None:
            return {}
        return {"denoiser_weights": {"path": str(weights), "sha256": _sha256(Path(weights))}}

    def build_model(self, protocol: AttackProtocol, variant: str) -> nn.Module:
        name = protocol.stand_in or variant
        arch = variant_info(name).arch if name in list_variants() else name
        return create_model(name, **protocol.kwargs_for(arch))

    def open_data(
        self, protocol: AttackProtocol, options: RunOptions, device: torch.device
    ) -> AttackData:
        from harness.tasks.adversarial.engine import open_attack_images

        return open_attack_images(protocol.dataset, options.data_root)

    def run_cell(
        self, model: nn.Module, data: AttackData, protocol: AttackProtocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        from harness.tasks.adversarial.engine import run_attack_cell

        attackers = _attackers(protocol, ctx.options.denoiser_weights)
        return run_attack_cell(model, data, protocol, config, attackers, device=ctx.device), None


TASK = Adversarial()
