"""The denoising task's name and protocol: light, so tables import them without the engine."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.protocol import Protocol

NAME = "denoising"


@dataclass(frozen=True)
class DenoiseProtocol(Protocol):
    """Adds the test set (``harness/data/images.TEST_SETS``; several make a table with one
    block of rows per set), the side of the square training patches (0: whole images)
    and a centre crop of the test images (0: full size)."""

    test_set: str | tuple[str, ...] = ""
    patch_size: int = 0
    test_crop: int = 0
    # train one model per row on noise levels drawn uniformly from this (low, high) range,
    # one per image, and test it at every sigma of the table (empty: one model per sigma,
    # as the paper trains)
    train_sigmas: tuple[int, int] | tuple[()] = ()

    @property
    def test_sets(self) -> tuple[str, ...]:
        return (self.test_set,) if isinstance(self.test_set, str) else self.test_set
