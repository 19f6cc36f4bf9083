"""Training and evaluating denoisers (Tables 4-8): residual learning on Gaussian noise.

Training draws fresh noise for every batch on the device (seeded, so runs repeat on
the CPU); the loss is the MSE between the predicted and the true noise, as the
paper's residual formulation says. Evaluation goes through test images one at a time
at full size (same-size images are batched), with the fixed noise of
:mod:`harness.imaging`, and can resume image by image through an
:class:`~harness.evalcache.ImageResultCache`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .evalcache import ImageResultCache
from .image_data import LoadedImage
from .imaging import gaussian_noise, psnr, ssim, to_uint8
from .measure import Stopwatch
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
        if batch and (len(batch) == size or batch[0].pixels.shape != image.pixels.shape):
            yield batch
            batch = []
        batch.append(image)
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
            cached = cache.get(image.id) if cache else None
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
                if cache:
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
