"""The VGG-16 of :mod:`registry.models.vgg`, which registers it and the rows of Tables 2-3."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..init import xavier_init_
from ..models.vgg import BLOCKS, POOLED, check_reductions
from ..reduction import Reduction


class VGG16(nn.Module):
    """VGG-16 for 32x32 inputs with optional channel reductions after its blocks."""

    def __init__(
        self,
        reductions: Mapping[int, Reduction] | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        plan = check_reductions(reductions or {})
        layers: list[nn.Module] = []
        channels = in_channels
        for position, widths in enumerate(BLOCKS, 1):
            reduction = plan.get(position, Reduction())
            for i, width in enumerate(widths):
                if i == len(widths) - 1:
                    width = reduction.conv_channels(width)
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            if position <= POOLED:
                layers.append(nn.MaxPool2d(2))
            if reduction.kind != "none":
                layers.append(reduction.layer(channels))
            channels = reduction.out_channels(widths[-1])
        side = image_size // 2**POOLED
        # features: everything before the classifier; hidden: the flattened maps it sees
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Flatten()
        self.head = nn.Linear(channels * side * side, num_classes)
        xavier_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hidden(self.features(x)))
