"""ImageNet as image folders: where they live, the smoke fixture, the standard augmentation.

ImageNet does not fit the GPU-resident uint8 arrays of the small tables, so its cells read
JPEGs through ``torchvision.datasets.ImageFolder`` and a ``DataLoader`` (the folders task's
engine); the adversarial task reads the same validation folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core import machine
from harness.core.errors import UserError
from harness.data import fingerprint
from harness.store.records import check_writable_dir

if TYPE_CHECKING:  # the catalogue is read without torch (tables, reports)
    from torch import Tensor
    from torch.utils.data import Dataset

MEAN = (0.485, 0.456, 0.406)  # ImageNet's per-channel statistics (torchvision's)
STD = (0.229, 0.224, 0.225)
TOP_K = 5


@dataclass(frozen=True)
class FolderSet:
    """An ImageFolder dataset: where it lives under --data-root and how it is cropped."""

    folder: str
    crop: int  # training random-resized crop and validation centre crop
    resize: int  # validation images are resized to this shorter side first
    workers: int  # DataLoader worker processes per rank, at most (loader_workers)
    train_size: int
    test_size: int
    summary: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)


FIXTURE_FOLDER = "imagenet-fixture"  # never the real ImageNet folder

FOLDER_SETS: Mapping[str, FolderSet] = MappingProxyType(
    {
        "imagenet": FolderSet(
            "imagenet", 224, 256, 8, 1_281_167, 50_000,
            "ILSVRC2012 as ImageFolder under <data-root>/imagenet/{train,val}/<wnid>/",
        ),
        "imagenet_smoke": FolderSet(
            FIXTURE_FOLDER, 32, 36, 0, 12, 6,
            f"a tiny generated ImageFolder in the ILSVRC2012 layout under <data-root>/{FIXTURE_FOLDER} "
            "(written when absent; 3 classes of tinted noise), 32x32 crops",
        ),
    }
)  # fmt: skip


def write_fixture_folder(
    base: Path, classes: int = 3, n_train: int = 4, n_val: int = 2, side: int = 40, seed: int = 0
) -> Path:
    """Small JPEGs in ILSVRC2012's ImageFolder layout: ``base/{train,val}/<wnid>/``.

    Each class is a colour tint plus noise, so that smoke runs need no download.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        for c in range(classes):
            folder = base / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                tint = np.array([60 + 80 * c, 200 - 60 * c, 128], dtype=np.int16)
                pixels = np.clip(tint + rng.integers(-40, 40, (side, side, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img_{c}_{i}.JPEG")
    return base


class _Indexed:
    """Items with their index, so each rank's share of an epoch can be counted. A map-style
    dataset as a DataLoader takes one (``__getitem__`` and ``__len__``), not a subclass of
    torch's ``Dataset``, so that the catalogue above is read without importing torch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        x, y = self.dataset[i]
        return x, y, i


@dataclass(frozen=True)
class FolderData:
    train: Dataset
    test: Dataset
    classes: int
    crop: int
    workers: int
    description: str
    # what the folders held (harness.data.fingerprint): the generated fixture's files
    # hashed, a real set's cheap fingerprint (hashing ImageNet per run would take minutes)
    sources: tuple[dict[str, Any], ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.crop, self.crop)


def loader_workers(spec: FolderSet) -> int:
    """DataLoader workers for one rank: the set's count, or this rank's share of the CPUs
    the run may use where that is fewer (a SLURM job's cores, a container's quota), since
    decoding processes beyond them only queue for the same CPUs."""
    if spec.workers == 0:
        return 0
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))  # set by torchrun
    except ValueError:
        ranks = 1
    return max(1, min(spec.workers, machine.cpu_budget() // ranks))


def _missing(root: Path) -> str:
    return (
        f"ImageNet is not under {root}: expected {root / 'train'} and {root / 'val'}, each with "
        "one folder per class (the ILSVRC2012 wnids, e.g. n01440764/) holding its JPEGs "
        "(validation images sorted into the same class folders); use --data-root to point there"
    )


def folder_of(name: str, data_root: Path) -> Path:
    """Where the image folders of ``name`` are; the smoke fixture is written there first
    when absent (by whichever task reads it first)."""
    root = Path(data_root) / FOLDER_SETS[name].folder
    if FOLDER_SETS[name].folder == FIXTURE_FOLDER and not (root / "train").is_dir():
        check_writable_dir(root, "--data-root")
        write_fixture_folder(root)
    return root


def open_folders(name: str, data_root: Path) -> FolderData:
    """The train and validation ImageFolders of ``name`` with the standard augmentation."""
    from torchvision import datasets, transforms

    spec = FOLDER_SETS[name]
    root = folder_of(name, data_root)
    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(spec.crop), transforms.RandomHorizontalFlip(), *normalise]
    )
    test_tf = transforms.Compose(
        [transforms.Resize(spec.resize), transforms.CenterCrop(spec.crop), *normalise]
    )
    try:
        train = datasets.ImageFolder(str(root / "train"), train_tf)
        test = datasets.ImageFolder(str(root / "val"), test_tf)
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(_missing(root)) from None
    if train.classes != test.classes:
        raise UserError(f"{root / 'train'} and {root / 'val'} hold different class folders")
    k = min(TOP_K, len(train.classes))
    top = "" if k == TOP_K else f"; top5 is top-{k} here (only {k} classes)"
    return FolderData(
        _Indexed(train), test, len(train.classes), spec.crop, loader_workers(spec),
        f"{len(train):,} train / {len(test):,} val images in {len(train.classes)} classes from "
        f"{root} (ImageFolder), {spec.crop}px crops{top}", folder_sources(spec, root),
    )  # fmt: skip


def folder_sources(
    spec: FolderSet, root: Path, parts: tuple[str, ...] = ("train", "val")
) -> tuple[dict[str, Any], ...]:
    """The generated fixture's files hashed; a real set's folders fingerprinted."""
    if spec.folder == FIXTURE_FOLDER:
        files = sorted(p for part in parts for p in (root / part).rglob("*") if p.is_file())
        return tuple(fingerprint.hashed(files))
    return tuple(fingerprint.fingerprint(root / part) for part in parts)
