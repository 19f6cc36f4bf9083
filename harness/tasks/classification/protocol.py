"""The classification task's name and protocol: light, so tables import them without the engine."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.protocol import Protocol

NAME = "classification"


@dataclass(frozen=True)
class ClassificationProtocol(Protocol):
    """Adds the augmentation of training batches: a random crop after zero padding by
    ``crop_padding`` pixels (0: none), and random horizontal flips."""

    crop_padding: int = 0
    hflip: bool = False
