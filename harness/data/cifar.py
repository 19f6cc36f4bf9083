"""CIFAR-10 through torchvision's dataset class, and the generated stand-ins used offline.

The real set goes through ``torchvision.datasets.CIFAR10``'s checks: the md5 of every
batch file, and the download of the archive (md5-checked too) when asked. Its batches
are pickles, and a pickle can run any code, so :class:`SafeCIFAR10` reads them with a
restricted unpickler (:func:`load_batch`) that admits only the numpy array types those
files hold and checks what it read. Fixtures cannot match the md5s, so
:class:`UnverifiedCIFAR10` sets the checksums to ``None`` (each file must only exist)
and never downloads. The harness uses it only for the folder ``cifar10-fixture`` under
``--data-root``, never for ``cifar-10-batches-py`` itself, so real data is always verified.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, VisionDataset
from torchvision.datasets.utils import check_integrity

from harness.core.errors import UserError
from harness.data import fingerprint
from harness.store.records import check_writable_dir

# Per-channel mean and std of the CIFAR-10 training images (pixels scaled to 0..1).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
FIXTURE_FOLDER = "cifar10-fixture"

Arrays = tuple[Tensor, Tensor, Tensor, Tensor]


# What a CIFAR-10 python batch is made of (protocol 2 pickles of numpy arrays, from
# Python 2 or 3, numpy 1 or 2); any other global in a batch file is refused.
_BATCH_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})  # fmt: skip


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR batch holds")
        return super().find_class(module, name)


def load_batch(path: Path) -> dict[str, Any]:
    """One CIFAR python batch file, unpickled without running any code it carries.

    A file that asks for anything but numpy arrays is refused with a one-line
    :class:`UserError` (nothing in it has run); a harmless file of the wrong shape
    raises ValueError.
    """
    with open(path, "rb") as handle:
        try:
            entry = _BatchUnpickler(handle, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            raise UserError(f"refusing to read {path}: {exc}") from None
        except Exception as exc:  # a damaged pickle fails in many ways; none runs code
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ValueError(f"{path} is not a CIFAR batch ({reason})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR batch (a {type(entry).__name__})")
    return entry


def _batch_arrays(path: Path) -> tuple[np.ndarray, list[int]]:
    entry = load_batch(path)
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):  # fmt: skip
        raise ValueError(f"{path}: 'data' is not uint8 rows of 3072 pixels")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(v, int) and 0 <= v < 100 for v in labels)):  # fmt: skip
        raise ValueError(f"{path}: 'labels' is not one class number per image")
    return data, labels


class SafeCIFAR10(CIFAR10):
    """torchvision's CIFAR10 (its md5 checks and download) with the batches read by
    :func:`load_batch` instead of a plain ``pickle.load``."""

    def __init__(
        self, root: str, train: bool = True, download: bool = False,
        transform: Callable | None = None, target_transform: Callable | None = None,
    ) -> None:  # fmt: skip
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted")
        folder = Path(self.root) / self.base_folder
        parts = [_batch_arrays(folder / name) for name, _ in
                 (self.train_list if train else self.test_list)]  # fmt: skip
        self.data = np.vstack([d for d, _ in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = [v for _, labels in parts for v in labels]
        meta = folder / self.meta["filename"]
        if not check_integrity(str(meta), self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted")
        self.classes = load_batch(meta).get(self.meta["key"])
        if not isinstance(self.classes, list):
            raise ValueError(f"{meta} names no classes")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class UnverifiedCIFAR10(SafeCIFAR10):
    """:class:`SafeCIFAR10` with md5 checks reduced to 'the file exists'; never downloads."""

    train_list: ClassVar = [[name, None] for name, _ in CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in CIFAR10.test_list]
    meta: ClassVar = {**CIFAR10.meta, "md5": None}

    def download(self) -> None:
        raise RuntimeError("fixture folders are never downloaded")


def _split(dataset: CIFAR10) -> tuple[Tensor, Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def read_cifar10(root: Path, *, verified: bool = True, download: bool = False) -> Arrays:
    """Train and test images (uint8, N x 3 x 32 x 32) and labels, md5-checked when ``verified``."""
    cls = SafeCIFAR10 if verified else UnverifiedCIFAR10
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=False)
    return (*_split(train), *_split(test))


def load_real(root: Path, download: bool) -> Arrays:
    """The real CIFAR-10 under ``root``; missing or corrupt files become one clear line."""
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-root {root} is not a directory; pass a folder for datasets")
    try:
        return read_cifar10(root)
    except RuntimeError:  # missing or failing its md5 check
        if not download:
            raise UserError(_missing(root, "downloads are disabled")) from None
    check_writable_dir(root, "--data-root")
    try:
        return read_cifar10(root, download=True)
    except Exception as exc:  # RuntimeError or URLError when offline
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(_missing(root, f"could not be downloaded: {reason}")) from None


def _files(cls: type[CIFAR10]) -> list[tuple[str, str | None]]:
    """(name, md5) of every file a CIFAR-10 class reads, its metadata included."""
    return [(n, md5) for n, md5 in [*cls.train_list, *cls.test_list]] + [
        (cls.meta["filename"], cls.meta["md5"])
    ]


def checked_files(root: Path) -> list[dict[str, Any]]:
    """The real set's files with the md5s torchvision has just checked them against."""
    return fingerprint.checked_md5s(Path(root) / CIFAR10.base_folder, _files(SafeCIFAR10))


def fixture_files(folder: Path) -> list[dict[str, Any]]:
    """A fixture's files, hashed (torchvision checks none of them)."""
    base = Path(folder) / CIFAR10.base_folder
    return fingerprint.hashed(base / name for name, _ in _files(UnverifiedCIFAR10))


def _missing(root: Path, why: str) -> str:
    return (
        f"CIFAR-10 is not under {root / CIFAR10.base_folder} (or fails its md5 check) and {why}; "
        "extract cifar-10-python.tar.gz into --data-root (or run once with network), "
        "or use --profile smoke or demo"
    )


def load_fixture(root: Path, n_train: int, n_test: int) -> tuple[Arrays, Path]:
    """Batches under ``root/cifar10-fixture``, written with generated images when absent."""
    folder = root / FIXTURE_FOLDER
    if not (folder / CIFAR10.base_folder).is_dir():
        check_writable_dir(folder, "--data-root")
        train_x, train_y = generated_images(n_train, seed=1)
        test_x, test_y = generated_images(n_test, seed=2)
        write_cifar10_python(folder, train_x, train_y, test_x, test_y)
    try:
        return read_cifar10(folder, verified=False), folder
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise UserError(
            f"cannot read the CIFAR-10 fixture in {folder / CIFAR10.base_folder} ({exc}); "
            "delete that folder to have it generated again"
        ) from None


def write_cifar10_python(
    folder: Path, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor
) -> Path:
    """Write images in CIFAR-10's python-pickle layout (``cifar-10-batches-py``).

    The training images are spread over ``data_batch_1`` .. ``data_batch_5``; each
    batch is a pickled dict whose ``data`` is uint8 (N, 3072), one image per row as
    its red, green and blue planes, and ``labels`` a list of ints, as in the real files.
    """
    out = Path(folder) / CIFAR10.base_folder
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in CIFAR10.train_list]
    parts = zip(
        names, np.array_split(train_x.numpy(), len(names)),
        np.array_split(train_y.numpy(), len(names)), strict=True,
    )  # fmt: skip
    for name, x, y in [*parts, ("test_batch", test_x.numpy(), test_y.numpy())]:
        _dump(out / name, {
            "batch_label": name, "labels": [int(v) for v in y],
            "data": np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), -1),
            "filenames": [f"{name}_{i:05d}.png" for i in range(len(x))],
        })  # fmt: skip
    _dump(out / CIFAR10.meta["filename"], {
        "label_names": list(CLASSES), "num_cases_per_batch": math.ceil(len(train_x) / len(names)),
        "num_vis": 3 * 32 * 32,
    })  # fmt: skip
    return out


def _dump(path: Path, entry: dict[str, object]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(entry, handle, protocol=2)


def generated_images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` generated 32x32 colour images in 10 classes (balanced), and their labels.

    Class c is a tint of its own plus a sinusoidal grating at angle c * 18 degrees,
    with a random phase and frequency per image and Gaussian pixel noise: learnable
    in a few steps, so accuracy moves, but nothing like CIFAR-10.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=gen)]
    palette = torch.rand(10, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    angle = labels.float() * math.pi / 10
    freq = 0.3 + 0.3 * torch.rand(n, generator=gen)
    phase = 2 * math.pi * torch.rand(n, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    along = xx * angle.cos()[:, None, None] + yy * angle.sin()[:, None, None]
    wave = torch.sin(freq[:, None, None] * along + phase[:, None, None])
    noise = torch.randn(n, 3, 32, 32, generator=gen)
    tint = palette[labels][:, :, None, None]
    images = 128 + 40 * tint + 60 * wave[:, None] * tint.abs() + 24 * noise
    return images.round().clamp(0, 255).to(torch.uint8), labels
