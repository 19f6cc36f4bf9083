"""The adversarial task's name and protocol: light, so tables import them without the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.protocol import Protocol

NAME = "adversarial"


@dataclass(frozen=True)
class AttackProtocol(Protocol):
    """Adds the FGSM step (0..1 pixel scale), whether the row's classifier gets
    torchvision's ImageNet weights (False: random), an architecture built instead of the
    row's (a random-weight stand-in), and the denoiser variant with its keyword arguments."""

    epsilon: float = 0.0
    pretrained: bool = False
    stand_in: str = ""
    denoiser: str = ""
    denoiser_kwargs: tuple[tuple[str, Any], ...] = ()
