"""Classical denoisers as registered models, so the runner evaluates them exactly as
it evaluates the networks: same images, same noise draws, same PSNR code.

Each is an ``nn.Module`` without parameters that denoises one image at a time on
the CPU (numpy), given the noise level through :attr:`ClassicalDenoiser.sigma`.
Their settings are fixed here, from each method's paper or library defaults, and
were not tuned on any test set.

* BM3D: the ``bm3d`` package (Mäkinen et al.'s reference implementation;
  non-commercial licence, an optional extra), ``bm3d_rgb`` with its default profile.
* K-SVD (Elad and Aharon, 2006; colour as in Mairal et al., 2008) through
  ``dictlearn``: 6x6x3 patches with their mean removed, 256 atoms learned by 10 K-SVD
  iterations on 10,000 random patches of the noisy image itself (initialised from
  patches, seed 0), OMP until the residual is below n (1.15 sigma)^2, overlapping
  patches averaged and blended with the noisy image with weight 30/sigma.
* NL-means (Buades et al., 2005) from scikit-image: 5x5 patches, 13x13 search
  window, h = 0.6 sigma, fast mode, as in scikit-image's gallery. It stands in for
  NL-Bayes, which has no usable implementation here: it is *not* NL-Bayes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import Tensor, nn

from .._registry import PaperRow, register_arch, register_variant


class MissingDependency(ImportError):
    """An optional package a method needs is not installed."""


class ClassicalDenoiser(nn.Module):
    """Denoises (N, C, H, W) images in [0, 1] (noise unclipped) one by one on the CPU."""

    modules_needed: tuple[str, ...] = ()  # imported by prepare(), outside any timing

    def __init__(self) -> None:
        super().__init__()
        self.sigma: float | None = None  # noise std on the 0-255 scale; set before use

    def prepare(self) -> None:
        """Import the libraries the method uses, so that a timed call does not."""
        for name in self.modules_needed:
            importlib.import_module(name)

    def denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        """(H, W, C) float64 in [0, 1] plus noise of std ``sigma`` (0..1 scale) -> estimate."""
        raise NotImplementedError

    def forward(self, y: Tensor) -> Tensor:
        if self.sigma is None:
            raise ValueError(f"{type(self).__name__}.sigma (0-255 scale) must be set first")
        out = [
            torch.from_numpy(self.denoise(_hwc(img), self.sigma / 255))
            for img in y
        ]  # fmt: skip
        return torch.stack(out).permute(0, 3, 1, 2).to(y.dtype)


def _hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) tensor -> contiguous (H, W, C) float64 (numpy's BLAS calls are many
    times slower on a strided view)."""
    return np.ascontiguousarray(image.permute(1, 2, 0).double().cpu().numpy())


class BM3D(ClassicalDenoiser):
    modules_needed = ("bm3d",)

    def __init__(self) -> None:
        super().__init__()
        if importlib.util.find_spec("bm3d") is None:
            raise MissingDependency(
                "BM3D needs the optional 'bm3d' package (free for non-commercial use only): "
                "pip install 'feature-pooling-harness[bm3d]'"
            )

    def denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        import bm3d

        return np.asarray(bm3d.bm3d_rgb(image, sigma), dtype=np.float64)


class KSVD(ClassicalDenoiser):
    modules_needed = ("dictlearn", "sklearn.feature_extraction.image")

    def __init__(
        self, patch: int = 6, atoms: int = 256, iterations: int = 10,
        training_patches: int = 10_000, gain: float = 1.15, weight: float = 30.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.patch, self.atoms, self.iterations = patch, atoms, iterations
        self.training_patches, self.gain, self.weight = training_patches, gain, weight

    def denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from dictlearn import DictionaryLearning
        from sklearn.feature_extraction.image import (
            extract_patches_2d,
            reconstruct_from_patches_2d,
        )

        p = self.patch
        patches = extract_patches_2d(image, (p, p))
        x = patches.reshape(len(patches), -1)
        mean = x.mean(axis=1, keepdims=True)
        x = x - mean
        n = x.shape[1]
        coder = _ErrorOMP(tol=n * (self.gain * sigma) ** 2, most=n // 2)
        rng = np.random.default_rng(0)
        train = x[rng.choice(len(x), min(self.training_patches, len(x)), replace=False)]
        init = train[rng.choice(len(train), min(self.atoms, len(train)), replace=False)]
        init = init / np.maximum(np.linalg.norm(init, axis=1, keepdims=True), 1e-12)
        learner = DictionaryLearning(
            len(init), fit_algorithm="ksvd", transform_algorithm=coder,
            max_iter=self.iterations, dict_init=init, random_state=0,
        ).fit(train)  # fmt: skip
        atoms = learner.components_
        estimate = coder(x, atoms) @ atoms + mean
        average = reconstruct_from_patches_2d(estimate.reshape(patches.shape), image.shape)
        # patches covering each pixel (fewer near the borders)
        h, w = image.shape[:2]
        cover = np.outer(
            np.convolve(np.ones(h - p + 1), np.ones(p)), np.convolve(np.ones(w - p + 1), np.ones(p))
        )[..., None]
        lam = self.weight / (sigma * 255)
        return (lam * image + cover * average) / (lam + cover)


class _ErrorOMP:
    """OMP that stops at a residual energy (K-SVD denoising's rule); picklable."""

    def __init__(self, tol: float, most: int) -> None:
        self.tol, self.most = tol, most

    def __call__(self, x: np.ndarray, dictionary: np.ndarray, **_: object) -> np.ndarray:
        from dictlearn import sparse_encode

        return sparse_encode(
            x, dictionary, algorithm="omp", tol=self.tol, n_nonzero_coefs=self.most
        )


class NLMeans(ClassicalDenoiser):
    modules_needed = ("skimage.restoration",)

    def __init__(self, patch: int = 5, distance: int = 6, h: float = 0.6) -> None:
        super().__init__()
        self.patch, self.distance, self.h = patch, distance, h

    def denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_nl_means

        return denoise_nl_means(
            image, h=self.h * sigma, sigma=sigma, patch_size=self.patch,
            patch_distance=self.distance, fast_mode=True, channel_axis=-1,
        )  # fmt: skip


for _name, _cls in (("bm3d", BM3D), ("ksvd", KSVD), ("nlmeans", NLMeans)):
    register_arch(_name)(_cls)


def table6_rows(
    row: str, bsd500: tuple[str, ...], tid2008: tuple[str, ...]
) -> tuple[PaperRow, ...]:
    """A method's two rows of Table 6 (sigma 20..60 on BSD500, then on TID2008)."""
    return tuple(
        PaperRow.psnr("table6", row, dict(zip((20, 30, 40, 50, 60), v, strict=True)), block)
        for block, v in (("bsd500", bsd500), ("tid2008", tid2008))
    )  # fmt: skip


register_variant(
    "classical.bm3d", "bm3d", description="BM3D (colour, bm3d package)",
    paper=table6_rows("BM3D", ("31.19", "29.11", "27.51", "26.56", "25.68"), ("31.46", "29.28", "28.02", "26.66", "25.39")),
)  # fmt: skip
register_variant(
    "classical.ksvd", "ksvd", description="K-SVD (colour, dictlearn)",
    paper=table6_rows("K-SVD", ("30.69", "28.66", "27.69", "25.93", "25.10"), ("30.87", "28.97", "27.89", "26.04", "24.92")),
)  # fmt: skip
register_variant(
    "classical.nlmeans",
    "nlmeans",
    description="NL-means (stand-in, not NL-Bayes)",
)
