"""The DnCNN of :mod:`registry.models.dncnn`, which registers it and says how it was checked."""

from __future__ import annotations

from torch import Tensor, nn

FEATURES = 64


class DnCNN(nn.Module):
    """``width`` scales the 64 hidden maps (the demo profile trains a narrower one)."""

    def __init__(
        self, depth: int = 20, width: float = 1.0, channels: int = 3, zero_last: bool = False
    ) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"DnCNN needs a depth of 3 or more, got {depth}")
        maps = max(1, round(FEATURES * width))
        layers: list[nn.Module] = [nn.Conv2d(channels, maps, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(maps, maps, 3, padding=1, bias=False),
                nn.BatchNorm2d(maps),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(maps, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if zero_last:
            nn.init.zeros_(self.body[-1].weight)

    def noise(self, y: Tensor) -> Tensor:
        return self.body(y)

    def forward(self, y: Tensor) -> Tensor:
        return y - self.noise(y)
