"""The feature-pooling denoiser of the paper's section 4.2 (Figures 8-11).

The paper gives the building blocks and their widths but leaves the wiring open.
Each choice below is marked CHOICE. Layout (widths for ``width=1``, sizes for a
32x32 input)::

    noisy y (3, 32) -> Inception(32) /2 -> Inception(64) /2 -> Inception(256) /2
            -> [FP1: 256 -> 128] -> 3 x ResidualInception(W) at 4x4
            -> [FP2: W -> W/2] -> Deconv(64) x2 (+ Inception(64)'s output)
            -> Deconv(32) x2 (+ Inception(32)'s output) -> Deconv(3) x2 = noise
    estimate x = y - noise

W is 128 after FP1 and 256 without it: a residual block keeps the width it is given,
so the paper's "128 kernels for all residual blocks" describes the FP network.

Why this wiring (see README, "The denoiser's wiring", and scripts/denoiser_wirings.py):

* Parameters. Counting conv kernel weights only, as the paper's Table 5 does, gives
  70,994,880 (67.71 x 2^20) for the baseline and 20,306,880 (19.37) for Baseline+2FP,
  the printed digits. Strides change no weight, so the counts do not decide the
  resolution; nor do they decide the depth: 6 residual blocks of one conv per branch
  have exactly the weights of 3 blocks of two.
* Clock. Table 5 trains the baseline for an epoch of CIFAR-10 in 91.05 s on a GTX 1070
  (6.46 TFLOP/s fp32 peak): at most 1.96e9 forward MACs per 32x32 image even at peak.
  At full resolution the convs cost weights x 1024 = 7.3e10, 37 times more; even with no
  residual block the inception and deconvolution blocks alone cost 6.3e9. The residual
  blocks (64.9M weights) can afford about 30 pixels: 4x4, an 8x reduction before them.
  CHOICE (``strides``): each inception block halves the size and each deconvolution
  block doubles it (transposed convs, told the size to restore, so odd sizes round-trip).
  That costs 1.18e9 MACs (baseline) and 3.7e8 (Baseline+2FP) per 32x32 image.
* Skips. CHOICE (``skips``): each deconvolution block's output is added to the
  inception block output of the same size (64 maps at 1/4, 32 at 1/2), as RED-Net,
  whose sentences on conv and deconv blocks the paper echoes, does. No weight is
  added. Without them every noise value must pass through the 4x4 bottleneck: after
  FP2 that is 64 x 16 = 1,024 numbers for the 3,072 noise values of a CIFAR image, so
  x = y - noise could remove at most a third of the noise energy (+1.8 dB), while
  Table 5 has Baseline+2FP 6-10 dB above its noisy input (and a little above the baseline).
  The dimensions mirror exactly (32, 64, 256 | 64, 32, 3), which such skips need.
* ``strides=(1, 1, 1), skips=False`` is the full-resolution network earlier versions
  of this harness registered (variants ``denoiser.fullres_*``, not the paper's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant
from ..reduction import Reduction
from .classical import table6_rows

if TYPE_CHECKING:
    from ..nets.denoiser import Denoiser

KERNELS = (1, 3, 5, 7, 9)  # the inception branches; no pooling branch (paper)
STRIDES = (2, 2, 2)  # CHOICE: each inception block halves the size, each deconv doubles it
RESIDUAL_BLOCKS = 3  # CHOICE: not stated; 3 blocks of 2 convs match both parameter counts


@register_arch("denoiser")
def denoiser(**kwargs: object) -> Denoiser:
    from ..nets.denoiser import Denoiser

    return Denoiser(**kwargs)  # type: ignore[arg-type]


def _table5(
    row: str, psnr: tuple[str, ...], params: str, flops: str, train: str, test: str
) -> PaperRow:
    values = {f"psnr_sigma{s}": p for s, p in zip((20, 30, 40, 50), psnr, strict=True)}
    values |= {
        "params_M_paper_conv": params,
        "flops_paper_conv": flops,
        "train_time_s": train,
        "test_time_s": test,
    }
    return PaperRow("table5", row, values)


def _table4(row: str, psnr: tuple[str, ...]) -> PaperRow:
    return PaperRow.psnr("table4", row, dict(zip((20, 30, 40, 50, 60), psnr, strict=True)))


_FP = Reduction("fp_max", 2)
_TOPK = Reduction("topk", 2)
# the paper's wiring, spelled out so that records of the full-resolution network
# (which these names meant before) hash differently and are not mistaken for it
_PAPER_WIRING = {"strides": STRIDES, "skips": True}
_FULL_RES = {"strides": (1, 1, 1), "skips": False}

register_variant(
    "denoiser.baseline", "denoiser", **_PAPER_WIRING, description="Denoiser without feature pooling",
    paper=(
        _table4("Baseline", ("29.67", "27.60", "26.67", "25.97", "25.21")),
        _table5("Baseline", ("27.81", "26.11", "24.54", "23.82"), "67.71", "1.42e8", "91.05", "10.34"),
    ),
)  # fmt: skip
register_variant(
    "denoiser.fp1", "denoiser", **_PAPER_WIRING, fp1=_FP, description="Denoiser with the first FP layer (256 -> 128)",
    paper=(_table4("Baseline +1FP", ("30.76", "28.72", "27.79", "26.93", "26.19")),),
)  # fmt: skip
register_variant(
    "denoiser.fp2", "denoiser", **_PAPER_WIRING, fp1=_FP, fp2=_FP, description="Denoiser with both spatial FP layers",
    paper=(
        _table4("Baseline +2FP", ("31.68", "29.83", "28.64", "27.71", "26.99")),
        *table6_rows("Baseline+2FP", ("31.68", "29.83", "28.64", "27.71", "26.99"),
                     ("31.73", "29.99", "28.89", "27.95", "27.17")),
        PaperRow.psnr("table7", "Baseline+2FP",
                      dict(zip((15, 20, 25, 30, 40, 50), ("32.53", "30.58", "29.75", "28.62", "27.27", "26.55"), strict=True))),
        PaperRow.psnr("table8", "Baseline+2FP",
                      dict(zip((10, 20, 30, 40, 50), ("33.71", "30.44", "28.54", "27.31", "26.53"), strict=True))),
        _table5("Baseline+2SP", ("28.30", "26.18", "24.74", "23.96"), "19.37", "4.06e7", "59.81", "7.07"),
    ),
)  # fmt: skip
register_variant(
    "denoiser.topk2", "denoiser", **_PAPER_WIRING, fp1=_TOPK, fp2=_TOPK, description="Denoiser with both FP layers as top-k",
    paper=(
        _table5("Baseline+2top-k", ("28.19", "26.32", "24.99", "24.02"), "19.37", "4.06e7", "65.15", "7.35"),
    ),
)  # fmt: skip

for _tag, _fps in (
    ("baseline", {}),
    ("fp1", {"fp1": _FP}),
    ("fp2", {"fp1": _FP, "fp2": _FP}),
    ("topk2", {"fp1": _TOPK, "fp2": _TOPK}),
):
    register_variant(
        f"denoiser.fullres_{_tag}", "denoiser", **_FULL_RES, **_fps,
        description=f"Denoiser {_tag} at full resolution, no skips (earlier wiring; not the paper's)",
    )  # fmt: skip
