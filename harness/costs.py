"""What a table's models cost before anything runs: architecture columns and plan prices.

``report`` fills the architecture-only columns (parameters and FLOPs, which need no
training) of rows that have no record, so a table's model costs can be checked before
any GPU hour is spent; ``plan`` prices a table's remaining work from the same shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from registry.models.classical import ClassicalDenoiser, MissingDependency

from .data import DATASETS
from .image_data import TEST_SETS
from .imagenet import FOLDER_SETS
from .runner import build_model, measure_model
from .tables import Protocol, TableSpec

# columns that depend on the architecture alone: the same for every seed, no spread
ARCHITECTURE_COLUMNS = ("params", "params_M_paper_conv", "flops", "flops_paper_conv")


@dataclass(frozen=True)
class TrainingShape:
    """One training image's shape, how many images an epoch sees, and a line naming them."""

    shape: tuple[int, ...]
    n_train: int
    summary: str


def training_shape(protocol: Protocol) -> TrainingShape:
    """The input a protocol trains on (what FLOPs are counted for), without loading data."""
    if protocol.dataset in DATASETS or protocol.dataset in FOLDER_SETS:
        dataset = DATASETS.get(protocol.dataset) or FOLDER_SETS[protocol.dataset]
        n_train = min(dataset.train_size, protocol.train_limit or dataset.train_size)
        return TrainingShape(dataset.shape, n_train, dataset.summary)
    side = protocol.patch_size or 224  # denoising: patches of photographs, or COCO at 224
    n_train = protocol.train_limit or 0
    return TrainingShape(
        (3, side, side), n_train, f"{n_train} {side}x{side} {protocol.dataset} images"
    )


_MEASURED: dict[tuple, dict[str, float]] = {}  # counting FLOPs runs a forward: once each


def architecture(spec: TableSpec, profile: str, variant: str) -> dict[str, float]:
    """A row's architecture-only columns as a run of ``profile`` would record them
    (empty for methods with no parameters or a missing optional package)."""
    protocol = spec.protocol(profile)
    key = (variant, spec.paper_flops, repr(protocol))
    if key not in _MEASURED:
        try:
            model = build_model(protocol, variant)
        except MissingDependency:
            model = None
        _MEASURED[key] = (
            {}
            if model is None or isinstance(model, ClassicalDenoiser)
            else measure_model(model, spec.paper_flops, training_shape(protocol).shape)
        )
    return {k: v for k, v in _MEASURED[key].items() if k in spec.columns}


def test_images(protocol: Protocol, test_set: str) -> tuple[int, int]:
    """(images, pixels per image) a denoising protocol tests on, as far as known unread."""
    side = protocol.test_crop
    if test_set in TEST_SETS:
        count, pixels = TEST_SETS[test_set].expected, (side * side or 481 * 321)  # BSDS size
    elif test_set == "demo_patches":
        count, pixels = 96, protocol.patch_size**2
    elif test_set == "demo":
        count, pixels = 3, side * side or 512 * 512
    else:  # a classification dataset's test split
        info = DATASETS[protocol.dataset]
        count = min(info.test_size, protocol.test_limit or info.test_size)
        pixels = math.prod(info.shape[1:])
    return count, pixels
