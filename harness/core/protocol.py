"""What every task's protocol has: how a cell trains and tests. Each task adds its own
fields in a subclass beside its plugin (``harness/tasks/``); a cell's config holds the
whole protocol of its task, so every field enters the config's hash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Protocol:
    """Training and testing common to every task. Fields the paper leaves open are
    documented in ``choices`` and shown in every report."""

    dataset: str
    epochs: int
    batch_size: int
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    # (epoch, lr) pairs: from that epoch on the learning rate is lr
    lr_steps: tuple[tuple[int, float], ...] = ()
    eval_points_per_epoch: int = 4
    test_batch_size: int = 1000
    test_repeats: int = 3
    train_limit: int | None = None
    test_limit: int | None = None
    # keyword arguments for create_model on top of the variant's (e.g. a narrower net);
    # arch_kwargs adds some for the rows of one architecture: ((arch, ((key, value), ...)), ...)
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    arch_kwargs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    # keyword arguments for the torch optimiser beyond lr, momentum and weight decay
    optimizer_options: tuple[tuple[str, Any], ...] = ()
    choices: str = ""

    def kwargs_for(self, arch: str) -> dict[str, Any]:
        """What create_model gets for a row of ``arch`` on top of the variant's own kwargs."""
        return {**dict(self.model_kwargs), **dict(dict(self.arch_kwargs).get(arch, ()))}
