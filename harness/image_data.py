"""Images for the denoising tables: test sets from folders, the COCO training subset,
and the demo photographs that ship inside scikit-image and scikit-learn.

Test sets are read at full size (no resizing), one image at a time, as 8-bit RGB;
a greyscale file is converted to RGB and the conversion is noted in the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from .errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class LoadedImage:
    id: str
    pixels: Tensor  # uint8 (3, H, W)
    note: str = ""


def read_rgb(path: Path) -> LoadedImage:
    """One image file as uint8 (3, H, W); greyscale is converted, not rejected."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    note = f"{path.name}: {mode} converted to RGB" if mode not in ("RGB", "RGBA") else ""
    return LoadedImage(path.stem, torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous(), note)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class TestSet:
    """A test set: where its images sit under --data-root and how to get them."""

    folders: tuple[str, ...]
    expected: int
    source: str
    label: str  # as reports print it

    def files(self, root: Path) -> list[Path]:
        files = [f for folder in self.folders for f in image_files(root / folder)]
        if not files:
            where = " and ".join(str(root / f) for f in self.folders)
            raise UserError(f"no images under {where}; {self.source}, or pass --test-dir DIR")
        return files


_BSDS = "BSR/BSDS500/data/images"
_BSDS_SOURCE = (
    "extract BSR_bsds500.tgz (http://www.eecs.berkeley.edu/Research/Projects/CS/vision/"
    "grouping/BSR/BSR_bsds500.tgz) into --data-root"
)

TEST_SETS: dict[str, TestSet] = {
    # all 500 images of BSDS500 (train 200 + val 100 + test 200)
    "bsd500": TestSet(
        (f"{_BSDS}/train", f"{_BSDS}/val", f"{_BSDS}/test"), 500, _BSDS_SOURCE, "BSD500"
    ),
    # the paper's "BSD200": read here as the 200 BSDS500 test images (the paper does not say)
    "bsd200": TestSet((f"{_BSDS}/test",), 200, _BSDS_SOURCE, "BSD200"),
    "tid2008": TestSet(
        ("tid2008/reference_images",),
        25,
        "put the 25 reference images of TID2008 (I01.BMP .. I25.BMP, from tid2008.rar at "
        "https://www.ponomarenko.info/tid2008.htm) in that folder",
        "TID2008",
    ),
    "cbsd68": TestSet(
        ("CBSD68",),
        68,
        "put the 68 colour BSD68 PNGs (CBSD68, e.g. testsets/CBSD68 of the DnCNN or KAIR "
        "repositories) in that folder",
        "CBSD68",
    ),
}


def iter_test_images(
    name: str, root: Path, test_dir: Path | None = None
) -> tuple[int, Iterator[LoadedImage]]:
    """(count, images) of a named test set, or of any folder given as ``test_dir``."""
    if test_dir is not None:
        if not Path(test_dir).is_dir():
            raise UserError(f"--test-dir {test_dir} is not a directory of images")
        files = image_files(Path(test_dir))
        if not files:
            raise UserError(f"--test-dir {test_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    elif name == "demo":
        images = demo_photos("test")
        return len(images), iter(images)
    else:
        files = TEST_SETS[name].files(Path(root))
    return len(files), (read_rgb(f) for f in files)


# --- the demo photographs --------------------------------------------------------------
# Fixed split of the real colour photographs bundled in installed wheels. The second
# view of scikit-image's stereo motorcycle is left out: it would leak the test scene.
DEMO_TRAIN = (
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "china",
)
DEMO_TEST = ("chelsea", "flower", "motorcycle")


def _photo(name: str) -> np.ndarray:
    import skimage.data
    from sklearn.datasets import load_sample_image

    if name in ("china", "flower"):
        return load_sample_image(f"{name}.jpg")
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def demo_photos(split: str) -> list[LoadedImage]:
    names = {"train": DEMO_TRAIN, "test": DEMO_TEST}[split]
    return [
        LoadedImage(n, torch.from_numpy(_photo(n).copy()).permute(2, 0, 1).contiguous())
        for n in names
    ]


def random_patches(images: list[Tensor], count: int, size: int, seed: int) -> Tensor:
    """``count`` random ``size`` x ``size`` crops (uint8, N x 3 x size x size), spread evenly over images."""
    gen = torch.Generator().manual_seed(seed)
    patches = []
    for i in range(count):
        img = images[i % len(images)]
        top = int(torch.randint(0, img.shape[1] - size + 1, (1,), generator=gen))
        left = int(torch.randint(0, img.shape[2] - size + 1, (1,), generator=gen))
        patches.append(img[:, top : top + size, left : left + size])
    return torch.stack(patches)


def coco_subset(folder: Path, count: int, size: int = 224, seed: int = 0,
                progress: Callable[[int], None] | None = None) -> Tensor:  # fmt: skip
    """The paper's COCO training set: ``count`` images drawn with a fixed seed, resized to size x size."""
    files = image_files(Path(folder))
    if len(files) < count:
        raise UserError(
            f"{folder} holds {len(files)} images, {count} needed; put COCO images (e.g. train2017/) there"
        )
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:count]
    out = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for i, idx in enumerate(order.tolist()):
        out[i] = TF.resize(read_rgb(files[idx]).pixels, [size, size], antialias=True)
        if progress:
            progress(i)
    return out
