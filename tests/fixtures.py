"""Writers for dataset fixtures in their real on-disk formats."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from harness.data.cifar import write_cifar10_python


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (big-endian header, uint8 payload) as MNIST ships it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_raw(
    root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
    """The four files torchvision.datasets.MNIST reads from ``root/MNIST/raw``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(root / "MNIST" / "raw" / name, array)
    return arrays


def write_cifar10_fixture(
    root: Path, n_train: int = 16, n_test: int = 8, seed: int = 0, folder: str = "cifar10-fixture"
) -> dict[str, np.ndarray]:
    """Random images in CIFAR-10's python-pickle layout under ``root/folder/cifar-10-batches-py``.

    ``folder="cifar10-fixture"`` is where the smoke profile reads (without md5 checks);
    ``folder="."`` puts the batches where the real, md5-checked loader looks.
    """
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train).astype(np.int64),
        "test_x": rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test).astype(np.int64),
    }
    write_cifar10_python(root / folder, **{k: torch.from_numpy(v) for k, v in arrays.items()})
    return arrays


def write_image_folder(root: Path, **kwargs: int) -> Path:
    """The smoke ImageFolder under ``root/imagenet-fixture`` (ILSVRC2012 layout)."""
    from harness.data.imagenet import FIXTURE_FOLDER, write_fixture_folder

    return write_fixture_folder(root / FIXTURE_FOLDER, **kwargs)
