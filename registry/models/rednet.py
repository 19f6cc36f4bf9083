"""RED-Net-30 (Mao et al., 2016), the network of the paper's Table 8.

15 convolutions then 15 deconvolutions (transposed convolutions), 3x3, 64 maps,
ReLU after each but the last. Every second conv's output is added to the input of
its mirror image in the deconvolution half (a symmetric skip), then ReLU, as RED-Net
does. 1,037,507 parameters at full width.

CHOICES (RED-Net's own code differs in ways the comparison does not depend on):
'same' padding, so every size of test image works and skips add without cropping;
the outermost skip joins the input image and the last layer's output (estimate =
input - output), so like the other networks here the body predicts the noise.
Xavier-uniform weights.
"""

from __future__ import annotations

from torch import Tensor, nn

from .._registry import PaperRow, register_arch, register_variant
from ..init import xavier_init_

FEATURES = 64


class REDNet(nn.Module):
    """``layers`` convolutions and as many deconvolutions; ``width`` scales the 64 maps."""

    def __init__(self, layers: int = 15, width: float = 1.0, channels: int = 3) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"RED-Net needs 2 or more layers per half, got {layers}")
        maps = max(1, round(FEATURES * width))
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if i == 0 else maps, maps, 3, padding=1) for i in range(layers)
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(maps, channels if i == layers - 1 else maps, 3, padding=1)
            for i in range(layers)
        )
        self.relu = nn.ReLU()
        xavier_init_(self)

    def noise(self, y: Tensor) -> Tensor:
        x, skips = y, []
        for i, conv in enumerate(self.convs, 1):
            x = self.relu(conv(x))
            skips.append(x if i % 2 == 0 else None)
        # deconv j undoes conv (n - j): it receives that conv's output, plus the skip
        for j, deconv in enumerate(self.deconvs):
            skip = skips[len(skips) - 1 - j]
            if skip is not None and j > 0:
                x = self.relu(x + skip)
            x = deconv(x)
            if j < len(self.deconvs) - 1:
                x = self.relu(x)
        return x

    def forward(self, y: Tensor) -> Tensor:
        return y - self.noise(y)


@register_arch("rednet")
def rednet(**kwargs: object) -> REDNet:
    return REDNet(**kwargs)  # type: ignore[arg-type]


register_variant(
    "rednet.red30", "rednet", layers=15,
    description="RED-Net-30, 15 conv + 15 deconv, 64 maps (trained here like our denoiser)",
    paper=(PaperRow.psnr("table8", "RED-Net", {10: "33.38", 30: "27.88", 50: "25.69"}),),
)  # fmt: skip
