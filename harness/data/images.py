"""Images for the denoising tables: test sets from folders, the COCO training subset,
and the demo photographs that ship inside scikit-image and scikit-learn.

Test sets are read at full size (no resizing), one image at a time, as 8-bit RGB.
Every conversion is noted in the record: greyscale and palette images become RGB, an
alpha channel is dropped, 16-bit samples are scaled (not clipped) to 8 bits. An image
larger than :data:`MAX_PIXELS` or smaller than a protocol needs is refused with a line
naming it, before anything is trained. An image's id (which draws its noise and keys
its cached result) is its path relative to the test folder, so two ``img.png`` in
different sub-folders are two images.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.data import fingerprint

if TYPE_CHECKING:
    import torch
    from torch import Tensor
    from torchvision.transforms.v2 import functional as TF
else:  # importing torchvision takes seconds (it loads torch._dynamo): only when resizing
    torch = lazy("torch")  # not imported by commands that only read records
    TF = lazy("torchvision.transforms.v2.functional")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class LoadedImage:
    id: str
    pixels: Tensor  # uint8 (3, H, W)
    note: str = ""


MAX_PIXELS = 64_000_000  # larger test images are refused (a 8000 x 8000 photo is the limit)
MIN_SIDE = 7  # SSIM's 7x7 window (scikit-image's default) needs at least this much

_CONVERSIONS = {"L": "greyscale converted to RGB", "P": "palette converted to RGB",
                "RGBA": "alpha dropped", "LA": "greyscale converted to RGB, alpha dropped",
                "PA": "palette converted to RGB, alpha dropped", "1": "1-bit converted to RGB",
                "CMYK": "CMYK converted to RGB", "YCbCr": "YCbCr converted to RGB",
                "I;16": "16-bit greyscale scaled to 8 bits"}  # fmt: skip


def printable(text: str) -> str:
    """A file name as text that can always be printed and hashed (undecodable bytes
    become \\x escapes instead of failing)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_rgb(path: Path, image_id: str | None = None) -> LoadedImage:
    """One image file as uint8 (3, H, W) with a note of any conversion; ``image_id``
    defaults to the file's stem."""
    path = Path(path)
    shown = printable(str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bombs are refused below, damage is an error
            mode, rgb = _decode(path, shown)
    except Image.DecompressionBombError:
        raise UserError(_too_large(shown)) from None
    except UserError:
        raise
    except Exception as exc:  # PIL's decoders fail in many ways on a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"cannot read image {shown}: {reason}") from None
    mode = "I;16" if mode.startswith("I") else mode
    conversion = _CONVERSIONS.get(mode, "" if mode == "RGB" else f"{mode} converted to RGB")
    note = f"{printable(path.name)}: {conversion}" if conversion else ""
    pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()
    return LoadedImage(image_id if image_id is not None else printable(path.stem), pixels, note)


def _decode(path: Path, shown: str) -> tuple[str, np.ndarray]:
    with Image.open(path) as img:  # reads the header only: the size is known before decoding
        if img.width * img.height > MAX_PIXELS:
            raise UserError(_too_large(shown, img.width, img.height))
        return img.mode, _to_rgb(img, shown)


def _too_large(shown: str, width: int = 0, height: int = 0) -> str:
    size = f" is {width}x{height} pixels," if width else " is"
    return (
        f"test image {shown}{size} larger than the limit of {MAX_PIXELS:,} pixels; crop or scale it"
    )


def _to_rgb(img: Image.Image, shown: str) -> np.ndarray:
    """8-bit RGB pixels; 16-bit samples are scaled by 255/65535, never clipped."""
    if img.mode.startswith("I"):
        wide = np.asarray(img).astype(np.int64)
        if wide.min() < 0 or wide.max() > 65535:
            raise ValueError(f"{img.mode} samples outside 0..65535 ({shown})")
        grey = np.rint(wide * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise ValueError(
            "floating-point samples have no agreed 8-bit scale; save it as 8 or 16 bits"
        )
    return np.asarray(img.convert("RGB"))


def check_images(files: list[tuple[Path, str]], min_side: int) -> None:
    """Decode every test image once, before any work: one line naming the first that
    cannot be read, is too large, or is smaller than ``min_side`` on a side."""
    for path, image_id in files:
        image = read_rgb(path, image_id)
        height, width = image.pixels.shape[1:]
        if min(height, width) < min_side:
            raise UserError(
                f"test image {printable(str(path))} is {width}x{height}; this table needs at "
                f"least {min_side}x{min_side} (remove it or pass another --test-dir)"
            )


def image_ids(files: list[Path], folder: Path) -> list[tuple[Path, str]]:
    """Each file with its id: its path relative to ``folder`` without the suffix (with
    it where two files differ only by their suffix)."""
    ids = [printable(f.relative_to(folder).with_suffix("").as_posix()) for f in files]
    repeated = {i for i in ids if ids.count(i) > 1}
    return [
        (f, printable(f.relative_to(folder).as_posix()) if i in repeated else i)
        for f, i in zip(files, ids, strict=True)
    ]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class TestSet:
    """A test set: where its images sit under --data-root and how to get them."""

    folders: tuple[str, ...]
    expected: int
    source: str
    label: str  # as reports print it

    def files(self, root: Path) -> list[tuple[Path, str]]:
        """Every image with its id (its path relative to its folder)."""
        files = [
            pair for folder in self.folders
            for pair in image_ids(image_files(root / folder), root / folder)
        ]  # fmt: skip
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


def test_files(name: str, root: Path, test_dir: Path | None = None) -> list[tuple[Path, str]]:
    """The image files (and ids) of a named test set, or of any folder given as ``test_dir``."""
    if test_dir is None:
        return TEST_SETS[name].files(Path(root))
    if not Path(test_dir).is_dir():
        raise UserError(f"--test-dir {test_dir} is not a directory of images")
    files = image_ids(image_files(Path(test_dir)), Path(test_dir))
    if not files:
        raise UserError(f"--test-dir {test_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def iter_test_images(
    name: str, root: Path, test_dir: Path | None = None
) -> tuple[int, Iterator[LoadedImage]]:
    """(count, images) of a named test set, or of any folder given as ``test_dir``."""
    if test_dir is None and name == "demo":
        images = demo_photos("test")
        return len(images), iter(images)
    files = test_files(name, root, test_dir)
    return len(files), (read_rgb(f, i) for f, i in files)


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


@functools.cache
def demo_sources(split: str) -> tuple[dict[str, Any], ...]:
    """What the bundled photographs of ``split`` were: a hash of each one's pixels."""
    return tuple(
        fingerprint.of_pixels(f"bundled photograph {image.id}", image.pixels.numpy().tobytes())
        for image in demo_photos(split)
    )


def test_sources(name: str, root: Path, test_dir: Path | None = None) -> list[dict[str, Any]]:
    """The files of a named test set or of a --test-dir, hashed as one set."""
    files = test_files(name, root, test_dir)
    label = str(test_dir) if test_dir is not None else f"{name} under {root}"
    return [fingerprint.hashed_set(label, (path for path, _ in files))]


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
