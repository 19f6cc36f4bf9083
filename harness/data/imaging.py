"""Noise and image-quality metrics for the denoising tables, one convention throughout.

* Noise: additive white Gaussian, standard deviation ``sigma`` on the 0-255 scale,
  added to the clean image in [0, 1] and *not* clipped (as DnCNN and KAIR do).
  The draw depends only on (image id, sigma, seed), so every method sees the same
  noisy pixels.
* PSNR: the estimate is clamped to [0, 1] and rounded to 8 bits, then
  10*log10(255^2 / MSE) with the MSE over all pixels and all three channels, no
  border crop. The noisy input's PSNR uses the same rule, so the gain is comparable.
* SSIM: as the denoising literature computes it (Wang et al.'s reference code, MATLAB's
  ``ssim``, KAIR): an 11x11 Gaussian window of sigma 1.5, population covariances, on the
  same 8-bit images with data_range 255, averaged over the three channels; computed by
  scikit-image's ``structural_similarity``. (Its default, a 7x7 uniform window with
  sample covariances, gives different values and is not used.)
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from harness.core.lazy import lazy

if TYPE_CHECKING:
    from skimage import metrics
else:
    metrics = lazy("skimage.metrics")  # scikit-image loads scipy: import it when SSIM is asked


def noise_seed(image_id: str, sigma: float, seed: int) -> int:
    """A 63-bit seed from (image, sigma, seed) alone: stable across runs and processes."""
    digest = hashlib.sha256(f"{image_id}|{float(sigma)}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def gaussian_noise(image_id: str, sigma: float, seed: int, shape: tuple[int, ...]) -> Tensor:
    """The noise for one image, in [0, 1] units (float32, on the CPU)."""
    gen = torch.Generator().manual_seed(noise_seed(image_id, sigma, seed))
    return torch.randn(shape, generator=gen) * (sigma / 255.0)


def to_uint8(image: Tensor) -> Tensor:
    """[0, 1] floats -> 8-bit, clamping first and rounding to nearest."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(clean: Tensor, estimate: Tensor) -> float:
    """PSNR in dB between two uint8 images of the same shape (inf when identical)."""
    if clean.shape != estimate.shape:
        raise ValueError(f"shapes differ: {tuple(clean.shape)} vs {tuple(estimate.shape)}")
    mse = (clean.double() - estimate.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(clean: Tensor, estimate: Tensor) -> float:
    """Gaussian-window SSIM (11x11, sigma 1.5) between two uint8 (3, H, W) images."""
    a, b = (np.ascontiguousarray(t.permute(1, 2, 0).cpu().numpy()) for t in (clean, estimate))
    return float(
        metrics.structural_similarity(
            a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
    )  # fmt: skip
