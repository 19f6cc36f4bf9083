"""The denoiser of :mod:`registry.models.denoiser`, which registers it and says why it is
wired as it is (each CHOICE below is argued there)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..init import xavier_init_
from ..models.denoiser import KERNELS, RESIDUAL_BLOCKS, STRIDES
from ..reduction import Reduction


class Unit(nn.Sequential):
    """Conv + BN + Tanh, the paper's basic unit (Fig. 9).

    A transposed conv is told the size to produce, so that upsampling restores odd sizes.
    """

    def forward(self, x: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        conv, *rest = self
        x = conv(x) if output_size is None else conv(x, output_size=output_size)
        for module in rest:
            x = module(x)
        return x


def _unit(conv: nn.Module, width: int, act: bool = True) -> Unit:
    return Unit(conv, nn.BatchNorm2d(width), nn.Tanh() if act else nn.Identity())


class BranchMean(nn.Module):
    """Parallel branches merged by their mean.

    CHOICE: the paper does not say how inception branches merge. Concatenation would
    give 5x the maps and several times the paper's parameter count; a mean keeps a
    block with K kernels at K maps and the activations at the branches' scale.
    """

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor, **kwargs: object) -> Tensor:
        out = self.branches[0](x, **kwargs)
        for branch in self.branches[1:]:
            out = out + branch(x, **kwargs)
        return out / len(self.branches)


def inception(
    cin: int, cout: int, stride: int = 1, transposed: bool = False, last: bool = False
) -> BranchMean:
    """Inception block (Fig. 9): Conv+BN+Tanh branches with kernels 1-9, 'same' padding.

    ``transposed`` gives the deconvolution block (Fig. 11), which upsamples by
    ``stride`` where the inception block downsamples by it. CHOICE: ``last`` (the
    block that emits the 3-channel noise) drops BN and Tanh so the output is linear.
    """
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    return BranchMean(
        [conv(cin, cout, k, stride=stride, padding=k // 2) if last
         else _unit(conv(cin, cout, k, stride=stride, padding=k // 2), cout)
         for k in KERNELS]
    )  # fmt: skip


class ResidualBranch(nn.Module):
    """A residual block (He et al.) of ``convs`` k x k Conv+BN units, Tanh after the sum.

    CHOICE: Tanh where He et al. use ReLU, as in every other unit of the network (Fig. 9).
    """

    def __init__(self, width: int, k: int, convs: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *(_unit(nn.Conv2d(width, width, k, padding=k // 2), width, act=i < convs - 1)
              for i in range(convs))
        )  # fmt: skip
        self.act = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def residual_inception(width: int, convs: int = 2) -> BranchMean:
    """An inception block whose branches are residual blocks (Fig. 10)."""
    return BranchMean([ResidualBranch(width, k, convs) for k in KERNELS])


class Denoiser(nn.Module):
    """Predicts the noise of a colour image; ``forward`` returns the clean estimate.

    ``fp1``/``fp2`` are the two reduction points (any registry reduction kind;
    stride 2 in the paper). ``width`` scales every hidden width (1 = the paper's);
    the demo profile uses a narrower net so that it trains on a CPU in minutes.
    ``strides`` are the inception blocks' strides, mirrored by the deconvolution
    blocks; ``skips`` adds each inception block's output to the deconvolution block
    output of the same size; ``residual_blocks`` x ``branch_convs`` set the depth.
    ``strides=(1, 1, 1), skips=False`` is the full-resolution network of earlier
    versions of this harness.
    """

    def __init__(
        self,
        fp1: Reduction = Reduction(),
        fp2: Reduction = Reduction(),
        width: float = 1.0,
        channels: int = 3,
        strides: Sequence[int] = STRIDES,
        skips: bool = True,
        residual_blocks: int = RESIDUAL_BLOCKS,
        branch_convs: int = 2,
    ) -> None:
        super().__init__()
        if len(strides) != 3 or any(not isinstance(s, int) or s < 1 for s in strides):
            raise ValueError(f"strides must be three positive integers, got {tuple(strides)}")

        def w(n: int) -> int:
            return max(1, round(n * width))

        inc3 = fp1.conv_channels(w(256))
        res = fp1.out_channels(w(256))
        s1, s2, s3 = strides
        self.skips = skips
        self.encoder = nn.Sequential(
            inception(channels, w(32), s1),
            inception(w(32), w(64), s2),
            inception(w(64), inc3, s3),
            fp1.layer(inc3),
        )
        # CHOICE: with fp2 = "conv" the last residual block cannot shrink (it keeps
        # its width), so a conv reduction is only meaningful at fp1.
        if fp2.kind == "conv":
            raise ValueError("fp2 cannot be a 'conv' reduction: residual blocks keep their width")
        self.residual = nn.Sequential(
            *(residual_inception(res, branch_convs) for _ in range(residual_blocks))
        )
        self.reduce2 = fp2.layer(res)
        self.decoder = nn.Sequential(
            inception(fp2.out_channels(res), w(64), s3, transposed=True),
            inception(w(64), w(32), s2, transposed=True),
            inception(w(32), channels, s1, transposed=True, last=True),
        )
        xavier_init_(self)

    def noise(self, y: Tensor) -> Tensor:
        """The residual the network learns: the noise in ``y``."""
        sizes, features, h = [], [], y
        for block in self.encoder[:3]:
            sizes.append(h.shape[-2:])
            h = block(h)
            features.append(h)
        h = self.reduce2(self.residual(self.encoder[3](h)))
        for i, block in enumerate(self.decoder):
            h = block(h, output_size=sizes[2 - i])
            if self.skips and i < 2:  # deconv 1 (64 maps) + inception 2, deconv 2 + inception 1
                h = h + features[1 - i]
        return h

    def forward(self, y: Tensor) -> Tensor:
        return y - self.noise(y)
