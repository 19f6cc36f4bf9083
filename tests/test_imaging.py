import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from harness.imaging import gaussian_noise, noise_seed, psnr, ssim, to_uint8


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
