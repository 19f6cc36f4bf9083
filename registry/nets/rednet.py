"""The RED-Net of :mod:`registry.models.rednet`, which registers it and says where its layout
comes from."""

from __future__ import annotations

from torch import Tensor, nn

from ..init import xavier_init_
from ..models.rednet import FEATURES


class REDNet(nn.Module):
    """``layers`` convolutions and as many deconvolutions of ``features`` maps each;
    ``width`` scales them (the demo profile trains a narrower one)."""

    def __init__(
        self, layers: int = 15, width: float = 1.0, channels: int = 3, features: int = FEATURES
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"RED-Net needs 2 or more layers per half, got {layers}")
        maps = max(1, round(features * width))
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
