"""Denoising (Tables 4-8): one model per noise level, tested image by image; classical
methods are tested without training, in a pool of worker processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.metrics import (
    FLOPS,
    FLOPS_CONVENTION,
    FLOPS_PAPER,
    PARAMS,
    PARAMS_CONVENTION,
    PARAMS_PAPER,
    TEST_TIME,
    TRAIN_TIME,
    Metric,
)
from harness.core.task import CellContext, RunOptions, Task, TrainingShape
from harness.data.classification import DATASETS
from harness.data.images import TEST_SETS
from harness.tasks.denoising.protocol import NAME, DenoiseProtocol, needed_side, training_key

if TYPE_CHECKING:  # the engine imports torch: tables and reports read this module without it
    import torch
    from torch import nn

    from harness.tasks.denoising.engine import DenoiseData, WorkerPool
    from harness.train.loop import TrainResult

PSNR = Metric("psnr", "PSNR", "dB", "{:.2f}", higher_is_better=True, logged=True, per_level=True)
NOISY_PSNR = Metric("noisy_psnr", "Noisy PSNR", "dB", "{:.2f}", logged=True, per_level=True)
SSIM = Metric("ssim", "SSIM", "0..1", "{:.3f}", higher_is_better=True, per_level=True)
TIME_PER_IMAGE = Metric(
    "time_per_image_s", "Time per image", "s", "{:.3g}", higher_is_better=False, logged=True
)
QUALITY_CONVENTION = (
    "PSNR: Gaussian noise of std sigma (0-255 scale) added unclipped, drawn from (image, "
    "sigma, seed) alone; the estimate clamped to [0, 1] and rounded to 8 bits; "
    "10*log10(255^2/MSE) over all pixels and channels, no border crop; mean over the test "
    "images. Noisy PSNR: the noisy input under the same rule. SSIM: 8-bit, 11x11 Gaussian "
    "window (sigma 1.5), mean over channels, as MATLAB and KAIR compute it."
)
TIMING_CONVENTION = (
    "train time: median over epochs of one epoch's synchronised training time; test time: "
    "the method's time summed over the whole test set (metrics and file reading excluded); "
    "time per image: the same per image, averaged over images and noise levels."
)


class Denoising(Task):
    name = NAME
    protocol_type = DenoiseProtocol
    accepts_test_dir = True
    metrics = (
        PSNR, NOISY_PSNR, SSIM, TRAIN_TIME, TEST_TIME, TIME_PER_IMAGE,
        PARAMS, PARAMS_PAPER, FLOPS, FLOPS_PAPER,
    )  # fmt: skip
    conventions = (
        (QUALITY_CONVENTION, ("psnr", "noisy_psnr", "ssim")),
        (TIMING_CONVENTION, ("train_time_s", "test_time_s", "time_per_image_s")),
        (PARAMS_CONVENTION, ("params", "params_M_paper_conv")),
        (FLOPS_CONVENTION, ("flops", "flops_paper_conv")),
    )

    def training_shape(self, protocol: DenoiseProtocol) -> TrainingShape:
        side = protocol.patch_size or 224  # patches of photographs, or COCO at 224
        n_train = protocol.train_limit or 0
        what = (
            f"random {side}x{side} patches of photographs bundled in scikit-image and scikit-learn"
            if protocol.dataset == "demo_photos"
            else f"{protocol.dataset} images at {side}x{side}"
        )
        return TrainingShape((3, side, side), n_train, f"{n_train} {what}")

    def test_images(self, protocol: DenoiseProtocol, test_set: str) -> tuple[int, int]:
        side = protocol.test_crop
        if test_set in TEST_SETS:
            return TEST_SETS[test_set].expected, (side * side or 481 * 321)  # BSDS size
        if test_set == "demo_patches":
            return 96, protocol.patch_size**2
        if test_set == "demo":
            return 3, side * side or 512 * 512
        info = DATASETS[protocol.dataset]  # digits as test images
        return min(info.test_size, protocol.test_limit or info.test_size), math.prod(info.shape[1:])

    def shared_training_key(
        self, config: dict[str, Any], protocol: DenoiseProtocol, train_data: str
    ) -> str | None:
        return training_key(config, protocol, train_data)

    def test_side(self, protocol: DenoiseProtocol) -> int:
        return needed_side(protocol)

    def __init__(self) -> None:
        self._pool: WorkerPool | None = None

    def blocks(self, protocol: DenoiseProtocol, test_dir: Path | None) -> tuple[str | None, ...]:
        sets = protocol.test_sets
        return sets if test_dir is None and len(sets) > 1 else (None,)

    def open_data(
        self, protocol: DenoiseProtocol, options: RunOptions, device: torch.device
    ) -> DenoiseData:
        from harness.tasks.denoising.engine import load_denoise_data

        return load_denoise_data(
            protocol, options.data_root, download=options.download, device=device,
            test_dir=options.test_dir,
        )  # fmt: skip

    def _workers(self, workers: int) -> WorkerPool:
        """One pool per process, started on first use and kept for the process's cells."""
        if self._pool is None or self._pool.workers != workers:
            from harness.tasks.denoising.engine import WorkerPool

            self.close(interrupted=False)
            self._pool = WorkerPool(workers).__enter__()
        return self._pool

    def run_cell(
        self, model: nn.Module, data: DenoiseData, protocol: DenoiseProtocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        from harness.tasks.denoising.engine import run_denoise_cell

        return run_denoise_cell(
            model, data, protocol, config, store=ctx.store, device=ctx.device, desc=ctx.desc,
            pool=self._workers(ctx.options.workers), retime=ctx.times_training,
            trained_since=ctx.options.started if ctx.options.force else None,
        )  # fmt: skip

    def close(self, interrupted: bool) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.__exit__(KeyboardInterrupt if interrupted else None, None, None)


TASK = Denoising()
