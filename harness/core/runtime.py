"""How a cell executes on its device (autocast, compile, channels_last), and which device."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.core.errors import UserError
from harness.core.lazy import lazy

if TYPE_CHECKING:
    import torch
else:  # commands that only read records never import torch (issue 29)
    torch = lazy("torch")


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose one of: cpu, cuda, auto")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)
