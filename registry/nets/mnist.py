"""The MNIST network of :mod:`registry.models.mnist`, which registers it and its variants."""

from __future__ import annotations

from torch import Tensor, nn

from ..init import xavier_init_
from ..models.mnist import CONV2_CHANNELS
from ..reduction import Reduction


class MnistCNN(nn.Module):
    """Two convs, an optional reduction after conv2, two fully connected layers."""

    def __init__(
        self,
        reduction: Reduction = Reduction(),
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        conv2_out = reduction.conv_channels(CONV2_CHANNELS)
        kept = reduction.out_channels(CONV2_CHANNELS)
        # features: everything before the fully connected layers (the maps of Fig. 5)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, conv2_out, 3, padding=1),
            nn.ReLU(inplace=True),
            reduction.layer(conv2_out),
        )
        # hidden: the last hidden layer (the activations of Fig. 6)
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(kept * image_size * image_size, 512), nn.ReLU(inplace=True)
        )
        self.head = nn.Linear(512, num_classes)
        xavier_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hidden(self.features(x)))
