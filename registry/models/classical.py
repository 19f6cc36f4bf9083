"""Classical denoisers as registered models, so the runner evaluates them exactly as
it evaluates the networks: same images, same noise draws, same PSNR code.

Each is an ``nn.Module`` without parameters that denoises one image at a time on
the CPU (numpy), given the noise level through :attr:`ClassicalDenoiser.sigma`.
Their settings (described here, set as the defaults of the classes in
:mod:`registry.nets.classical`) come from each method's paper or library defaults, and
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

from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant

if TYPE_CHECKING:
    from ..nets.classical import BM3D, KSVD, NLMeans


class MissingDependency(ImportError):
    """An optional package a method needs is not installed."""


@register_arch("bm3d")
def bm3d() -> BM3D:
    from ..nets.classical import BM3D

    return BM3D()


@register_arch("ksvd")
def ksvd(**kwargs: object) -> KSVD:
    from ..nets.classical import KSVD

    return KSVD(**kwargs)  # type: ignore[arg-type]


@register_arch("nlmeans")
def nlmeans(**kwargs: object) -> NLMeans:
    from ..nets.classical import NLMeans

    return NLMeans(**kwargs)  # type: ignore[arg-type]


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
