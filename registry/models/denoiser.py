"""The feature-pooling denoiser of the paper's section 4.2 (Figures 8-11).

The paper gives the building blocks and their widths but leaves the wiring open.
Each choice below is marked CHOICE; together they put the parameter counts where
the paper's Table 5 does (baseline 67.71M and Baseline+2FP 19.37M in 2^20 units:
ours 67.7 and 19.4, see tests/test_denoiser.py).

Layout (widths for ``width=1``)::

    noisy y -> Inception(32) -> Inception(64) -> Inception(256)
            -> [FP1: 256 -> 128] -> 3 x ResidualInception(W)
            -> [FP2: W -> W/2]   -> Deconv(64) -> Deconv(32) -> Deconv(3) = noise
    estimate x = y - noise

W is 128 after FP1 and 256 without it: a residual block keeps the width it is given,
so the paper's "128 kernels for all residual blocks" describes the FP network.
"""

from __future__ import annotations

from torch import Tensor, nn

from .._registry import PaperRow, register_arch, register_variant
from ..init import xavier_init_
from ..reduction import Reduction
from .classical import table6_rows

KERNELS = (1, 3, 5, 7, 9)  # the inception branches; no pooling branch (paper)
RESIDUAL_BLOCKS = 3  # CHOICE: not stated; 3 matches both parameter counts


def _unit(conv: nn.Module, width: int, act: bool = True) -> nn.Sequential:
    """Conv + BN + Tanh, the paper's basic unit (Fig. 9)."""
    return nn.Sequential(conv, nn.BatchNorm2d(width), nn.Tanh() if act else nn.Identity())


class BranchMean(nn.Module):
    """Parallel branches merged by their mean.

    CHOICE: the paper does not say how inception branches merge. Concatenation would
    give 5x the maps and several times the paper's parameter count; a mean keeps a
    block with K kernels at K maps and the activations at the branches' scale.
    """

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out / len(self.branches)


def inception(cin: int, cout: int, transposed: bool = False, last: bool = False) -> BranchMean:
    """Inception block (Fig. 9): Conv+BN+Tanh branches with kernels 1-9, 'same' padding.

    ``transposed`` gives the deconvolution block (Fig. 11). CHOICE: ``last`` (the
    block that emits the 3-channel noise) drops BN and Tanh so the output is linear.
    """
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    return BranchMean(
        [conv(cin, cout, k, padding=k // 2) if last else _unit(conv(cin, cout, k, padding=k // 2), cout)
         for k in KERNELS]
    )  # fmt: skip


class ResidualBranch(nn.Module):
    """A residual block (He et al.) with k x k convs: tanh(x + BN(conv(tanh(BN(conv(x))))))."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _unit(nn.Conv2d(width, width, k, padding=k // 2), width),
            _unit(nn.Conv2d(width, width, k, padding=k // 2), width, act=False),
        )
        self.act = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def residual_inception(width: int) -> BranchMean:
    """An inception block whose branches are residual blocks (Fig. 10)."""
    return BranchMean([ResidualBranch(width, k) for k in KERNELS])


class Denoiser(nn.Module):
    """Predicts the noise of a colour image; ``forward`` returns the clean estimate.

    ``fp1``/``fp2`` are the two reduction points (any registry reduction kind;
    stride 2 in the paper). ``width`` scales every hidden width (1 = the paper's);
    the demo profile uses a narrower net so that it trains on a CPU in minutes.
    """

    def __init__(
        self,
        fp1: Reduction = Reduction(),
        fp2: Reduction = Reduction(),
        width: float = 1.0,
        channels: int = 3,
    ) -> None:
        super().__init__()

        def w(n: int) -> int:
            return max(1, round(n * width))

        inc3 = fp1.conv_channels(w(256))
        res = fp1.out_channels(w(256))
        self.encoder = nn.Sequential(
            inception(channels, w(32)),
            inception(w(32), w(64)),
            inception(w(64), inc3),
            fp1.layer(inc3),
        )
        # CHOICE: with fp2 = "conv" the last residual block cannot shrink (it keeps
        # its width), so a conv reduction is only meaningful at fp1.
        if fp2.kind == "conv":
            raise ValueError("fp2 cannot be a 'conv' reduction: residual blocks keep their width")
        self.residual = nn.Sequential(*(residual_inception(res) for _ in range(RESIDUAL_BLOCKS)))
        self.reduce2 = fp2.layer(res)
        self.decoder = nn.Sequential(
            inception(fp2.out_channels(res), w(64), transposed=True),
            inception(w(64), w(32), transposed=True),
            inception(w(32), channels, transposed=True, last=True),
        )
        xavier_init_(self)

    def noise(self, y: Tensor) -> Tensor:
        """The residual the network learns: the noise in ``y``."""
        return self.decoder(self.reduce2(self.residual(self.encoder(y))))

    def forward(self, y: Tensor) -> Tensor:
        return y - self.noise(y)


@register_arch("denoiser")
def denoiser(**kwargs: object) -> Denoiser:
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

register_variant(
    "denoiser.baseline", "denoiser", description="Denoiser without feature pooling",
    paper=(
        _table4("Baseline", ("29.67", "27.60", "26.67", "25.97", "25.21")),
        _table5("Baseline", ("27.81", "26.11", "24.54", "23.82"), "67.71", "1.42e8", "91.05", "10.34"),
    ),
)  # fmt: skip
register_variant(
    "denoiser.fp1", "denoiser", fp1=_FP, description="Denoiser with the first FP layer (256 -> 128)",
    paper=(_table4("Baseline +1FP", ("30.76", "28.72", "27.79", "26.93", "26.19")),),
)  # fmt: skip
register_variant(
    "denoiser.fp2", "denoiser", fp1=_FP, fp2=_FP, description="Denoiser with both spatial FP layers",
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
    "denoiser.topk2", "denoiser", fp1=_TOPK, fp2=_TOPK, description="Denoiser with both FP layers as top-k",
    paper=(
        _table5("Baseline+2top-k", ("28.19", "26.32", "24.99", "24.02"), "19.37", "4.06e7", "65.15", "7.35"),
    ),
)  # fmt: skip
