"""The classical denoisers of :mod:`registry.models.classical`, which registers them and
gives their settings and sources."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import Tensor, nn

from ..models.classical import MissingDependency


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
