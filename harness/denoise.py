"""Training and evaluating denoisers (Tables 4-8): residual learning on Gaussian noise.

Training draws fresh noise for every batch on the device (seeded, so runs repeat on
the CPU); the loss is the MSE between the predicted and the true noise, as the
paper's residual formulation says. Evaluation goes through test images one at a time
at full size (same-size images are batched), with the fixed noise of
:mod:`harness.imaging`, and can resume image by image through an
:class:`~harness.evalcache.ImageResultCache`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .data import load_classification
from .evalcache import ImageResultCache
from .image_data import (
    DEMO_TEST,
    DEMO_TRAIN,
    LoadedImage,
    coco_subset,
    demo_photos,
    iter_test_images,
    random_patches,
)
from .imaging import gaussian_noise, psnr, ssim, to_uint8
from .measure import Stopwatch
from .store import RunStore, atomic_write_text, load_tensors
from .tables import Protocol
from .train import TrainResult, eval_steps, lr_for_epoch, make_optimizer


def train_denoiser(
    model: nn.Module,
    train_x: Tensor,
    protocol: Protocol,
    *,
    sigma: float,
    seed: int,
    device: torch.device,
    desc: str = "",
) -> TrainResult:
    """Train ``model`` (which has a ``noise`` method) on uint8 images already on ``device``."""
    result = TrainResult()
    optimizer = make_optimizer(model, protocol)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed)
    n = len(train_x)
    steps = math.ceil(n / protocol.batch_size)
    points = eval_steps(steps, protocol.eval_points_per_epoch)
    model.train()
    bar = tqdm(total=protocol.epochs * steps, desc=desc, leave=False, unit="step", disable=None)
    for epoch in range(protocol.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_for_epoch(protocol, epoch)
        order = torch.randperm(n, generator=gen)
        watch, losses = Stopwatch(device), []
        for step in range(steps):
            idx = order[step * protocol.batch_size : (step + 1) * protocol.batch_size].to(device)
            clean = train_x[idx].float().div_(255)
            noise = torch.randn(clean.shape, generator=noise_gen, device=device).mul_(sigma / 255)
            with watch:
                loss = F.mse_loss(model.noise(clean + noise), noise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            losses.append(loss.detach())
            bar.update()
            if step + 1 in points:
                mean = torch.stack(losses).mean().item()
                losses.clear()
                result.history.append(
                    {"epoch": epoch + (step + 1) / steps, "step": epoch * steps + step + 1,
                     "lr": optimizer.param_groups[0]["lr"], "train_loss": mean}
                )  # fmt: skip
                bar.set_postfix(loss=f"{mean:.3g}")
                if not math.isfinite(mean):
                    result.diverged = True
                    break
        result.epoch_times_s.append(watch.elapsed)
        if result.diverged:
            break
    bar.close()
    return result


def _batches(images: Iterable[LoadedImage], size: int) -> Iterator[list[LoadedImage]]:
    """Consecutive images of one shape, at most ``size`` at a time."""
    batch: list[LoadedImage] = []
    for image in images:
        if batch and batch[0].pixels.shape != image.pixels.shape:
            yield batch
            batch = []
        batch.append(image)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def evaluate_denoiser(
    model: nn.Module,
    images: Iterable[LoadedImage],
    count: int,
    *,
    sigma: float,
    seed: int,
    device: torch.device,
    cache: ImageResultCache | None = None,
    batch_size: int = 1,
    desc: str = "",
) -> dict[str, float]:
    """Mean PSNR/SSIM of the estimates and of the noisy inputs, and the forward time.

    ``test_time_s`` sums the synchronised forward passes (metrics and file reading
    excluded) over the images evaluated in this call; images found in ``cache`` are
    reused, not recomputed.
    """
    model.eval()
    watch = Stopwatch(device)
    done: list[dict] = []
    notes: list[str] = []
    bar = tqdm(total=count, desc=desc, leave=False, unit="img", disable=None)
    for batch in _batches(images, batch_size):
        todo = []
        for image in batch:
            cached = cache.get(image.id) if cache is not None else None
            if cached:
                done.append(cached)
            else:
                todo.append(image)
            if image.note:
                notes.append(image.note)
        if todo:
            clean = torch.stack([im.pixels for im in todo])
            noise = torch.stack(
                [gaussian_noise(im.id, sigma, seed, im.pixels.shape) for im in todo]
            )
            noisy = clean.float() / 255 + noise
            with watch:
                estimate = model(noisy.to(device))
            for im, est, y in zip(
                todo, to_uint8(estimate.float().cpu()), to_uint8(noisy), strict=True
            ):
                entry = {"image": im.id, "psnr": psnr(im.pixels, est), "ssim": ssim(im.pixels, est),
                         "noisy_psnr": psnr(im.pixels, y), "note": im.note}  # fmt: skip
                if cache is not None:
                    cache.add(entry)
                done.append(entry)
        bar.update(len(batch))
    bar.close()
    if not done:
        raise ValueError("no test images were evaluated")
    return {
        "psnr": statistics.fmean(e["psnr"] for e in done),
        "ssim": statistics.fmean(e["ssim"] for e in done),
        "noisy_psnr": statistics.fmean(e["noisy_psnr"] for e in done),
        "test_time_s": watch.elapsed,
        "n_images": len(done),
        "notes": sorted(set(notes)),
    }


# --- data and cells for the runner -------------------------------------------------------


@dataclass(frozen=True)
class DenoiseData:
    """Training images (uint8, on the device) and a way to walk the test images."""

    train_x: Tensor
    test_count: int
    test_images: Callable[[], Iterator[LoadedImage]]
    description: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _as_images(prefix: str, pixels: Tensor) -> list[LoadedImage]:
    return [LoadedImage(f"{prefix}-{i:05d}", p) for i, p in enumerate(pixels)]


def load_denoise_data(
    protocol: Protocol, root: Path, *, download: bool, device: torch.device,
    test_dir: Path | None = None,
) -> DenoiseData:  # fmt: skip
    """The training images and test set a denoising protocol names (see tables.py)."""
    root = Path(root)
    test: list[LoadedImage] | None = None
    if protocol.dataset == "demo_photos":
        train = random_patches([p.pixels for p in demo_photos("train")], protocol.train_limit or 512,
                               protocol.patch_size, seed=0)  # fmt: skip
        train_desc = f"{len(train)} random {protocol.patch_size}x{protocol.patch_size} patches of {len(DEMO_TRAIN)} bundled photographs"
    elif protocol.dataset == "coco":
        train = coco_subset(root / "coco", protocol.train_limit or 15_000)
        train_desc = f"{len(train)} COCO images from {root / 'coco'} (seed 0), resized to 224x224"
    else:  # a classification dataset used for its images (CIFAR-10 in Table 5)
        data = load_classification(
            protocol.dataset, root, download=download,
            train_limit=protocol.train_limit, test_limit=protocol.test_limit,
        )  # fmt: skip
        train, test, train_desc = (
            data.train_x,
            _as_images(protocol.dataset, data.test_x),
            data.description,
        )

    if test_dir is not None or protocol.test_set not in ("demo", "demo_patches", "cifar10"):
        count, _ = iter_test_images(protocol.test_set, root, test_dir)  # fails early if missing
        source = str(test_dir) if test_dir else f"{protocol.test_set} under {root}"

        def walk() -> Iterator[LoadedImage]:
            return iter_test_images(protocol.test_set, root, test_dir)[1]
    else:
        if protocol.test_set == "demo":
            test = demo_photos("test")
            source = f"{len(test)} bundled photographs at full size ({', '.join(DEMO_TEST)})"
        elif protocol.test_set == "demo_patches":
            pixels = random_patches(
                [p.pixels for p in demo_photos("test")], 96, protocol.patch_size, seed=1
            )
            test = _as_images("demo-patch", pixels)
            source = f"96 random {protocol.patch_size}x{protocol.patch_size} patches of {', '.join(DEMO_TEST)}"
        else:
            source = f"{len(test)} test images of {protocol.dataset}"
        count = len(test)

        def walk() -> Iterator[LoadedImage]:
            return iter(test)

    def cropped() -> Iterator[LoadedImage]:
        for im in walk():
            if protocol.test_crop:
                im = LoadedImage(
                    im.id, TF.center_crop(im.pixels, [protocol.test_crop] * 2), im.note
                )
            yield im

    crop = (
        f", centre-cropped to {protocol.test_crop}x{protocol.test_crop}"
        if protocol.test_crop
        else ""
    )
    return DenoiseData(
        train.to(device), count, cropped, f"train: {train_desc}; test: {source}{crop}"
    )


def run_denoise_cell(
    model: nn.Module, data: DenoiseData, protocol: Protocol, config: dict[str, Any], *,
    store: RunStore, device: torch.device, desc: str,
) -> tuple[TrainResult, Path]:  # fmt: skip
    """Train (or reload the trained weights of a cell killed while testing), then test.

    After training, the weights and the training result are saved before the test
    starts, and test images are cached one by one, so a killed cell resumes its
    evaluation without retraining or re-testing any image.
    """
    record_path = store.path(config)
    trained = record_path.with_suffix(".train.json")
    cache = ImageResultCache(record_path.with_suffix(".images.jsonl"))
    sigma, seed = config["sigma"], config["seed"]
    if trained.is_file() and record_path.with_suffix(".pt").is_file():
        model.load_state_dict(load_tensors(record_path.with_suffix(".pt")))
        result = TrainResult(**json.loads(trained.read_text()))
    else:
        result = train_denoiser(
            model, data.train_x, protocol, sigma=sigma, seed=seed, device=device, desc=desc
        )
        store.save_weights(config, model.state_dict())
        atomic_write_text(trained, json.dumps(asdict(result)))
    metrics = evaluate_denoiser(
        model, data.test_images(), data.test_count, sigma=sigma, seed=seed, device=device,
        cache=cache, batch_size=protocol.test_batch_size, desc=f"{desc} test",
    )  # fmt: skip
    result.notes = metrics.pop("notes")
    result.metrics = {**metrics, "train_time_s": statistics.median(result.epoch_times_s)}
    return result, record_path.with_suffix(".pt")
