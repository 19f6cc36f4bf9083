"""The denoising task's name and protocol: light, so tables import them without the engine;
and what a protocol decides before anything runs (which cells share a trained model, the
smallest test image), which ``plan`` asks without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.protocol import Protocol
from harness.data.images import MIN_SIDE
from harness.store.records import config_hash, jsonable

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


def needed_side(protocol: DenoiseProtocol) -> int:
    """The smallest test image a protocol can score: its centre crop (never padded), and
    SSIM's window."""
    return max(protocol.test_crop or 0, MIN_SIDE)


# the protocol fields that decide a trained model (not the test set, crop or choices text)
_TRAINING_FIELDS = (
    "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_steps",
    "eval_points_per_epoch", "train_limit", "patch_size", "optimizer_options",
)  # fmt: skip


def training_key(config: dict[str, Any], protocol: DenoiseProtocol, train_data: str) -> str:
    """Equal keys, equal trained weights: the same architecture and kwargs, data, training
    protocol, noise level and seed, whichever table asks (Table 4's Baseline+2FP at sigma
    30 is Table 6's, 7's and 8's). A model trained over a range of noise levels
    (``train_sigmas``) serves every sigma."""
    return config_hash(
        {
            "arch": config["arch"],
            "model": config["model"],
            "kwargs": jsonable(protocol.kwargs_for(config["arch"])),
            "protocol": {k: config["protocol"].get(k) for k in _TRAINING_FIELDS},
            "train_data": train_data,
            "sigma": list(protocol.train_sigmas) or config["sigma"],
            "seed": config["seed"],
        }
    )
