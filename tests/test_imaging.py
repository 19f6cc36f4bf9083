import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.data.imaging import gaussian_noise, noise_seed, psnr, ssim, to_uint8


def test_psnr_hand_computed():
    clean = torch.zeros(3, 2, 2, dtype=torch.uint8)
    off_by_one = clean.clone()
    off_by_one[0, 0, 0] = 1  # one of 12 values differs by 1: MSE = 1/12
    assert psnr(clean, off_by_one) == pytest.approx(10 * math.log10(255**2 * 12))
    all_ten = clean + 10  # MSE = 100 -> 20*log10(25.5)
    assert psnr(clean, all_ten) == pytest.approx(28.130803608679102)
    assert psnr(clean, clean) == math.inf


def test_psnr_agrees_with_scikit_image():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 17, 9), generator=gen, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 17, 9), generator=gen, dtype=torch.uint8)
    assert psnr(a, b) == pytest.approx(
        peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=255)
    )


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.6 / 255, 0.4 / 255, 1.2])
    assert to_uint8(x).tolist() == [0, 0, 1, 0, 255]


def test_noise_depends_only_on_image_sigma_seed():
    a = gaussian_noise("img1", 25, 0, (3, 8, 8))
    assert torch.equal(a, gaussian_noise("img1", 25, 0, (3, 8, 8)))
    assert not torch.equal(a, gaussian_noise("img2", 25, 0, (3, 8, 8)))
    assert not torch.equal(a, gaussian_noise("img1", 25, 1, (3, 8, 8)))
    assert noise_seed("img1", 25, 0) == noise_seed("img1", 25.0, 0)
    big = gaussian_noise("img1", 25, 0, (3, 256, 256))
    assert big.std().item() * 255 == pytest.approx(25, rel=0.02)


def test_ssim_identity_and_degradation():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = to_uint8(a.float() / 255 + gaussian_noise("x", 50, 0, a.shape))
    assert ssim(a, noisy) < 0.9


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM as KAIR's ``calculate_ssim`` writes it: 11x11 Gaussian window
    (sigma 1.5), 'valid' filtering, C1 = (0.01 L)^2, C2 = (0.03 L)^2, mean over channels."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(x: np.ndarray) -> np.ndarray:
        return correlate2d(x, window, mode="valid")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64), strict=True):
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def test_ssim_is_the_gaussian_window_ssim_of_the_denoising_literature():
    gen = torch.Generator().manual_seed(2)
    clean = to_uint8(torch.rand(3, 1, 1, generator=gen) * torch.linspace(0, 1, 40)[:, None])
    clean = to_uint8(clean.float() / 255 + gaussian_noise("smooth", 10, 0, (3, 40, 33)))
    noisy = to_uint8(clean.float() / 255 + gaussian_noise("y", 25, 0, clean.shape))
    a, b = clean.numpy(), noisy.numpy()
    ours = ssim(clean, noisy)
    assert ours == pytest.approx(_reference_ssim(a, b), abs=1e-9)
    hwc = [np.ascontiguousarray(x.transpose(1, 2, 0)) for x in (a, b)]
    assert ours == pytest.approx(
        structural_similarity(
            *hwc, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
    )  # fmt: skip
    # scikit-image's default (7x7 uniform window) is a different number
    assert abs(ours - structural_similarity(*hwc, channel_axis=-1, data_range=255)) > 1e-3
