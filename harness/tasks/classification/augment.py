"""Model inputs made on the device from uint8 images: augmentation, normalisation, layout.

The dataset stays on the device as uint8 (see ``data.py``), so augmenting there
keeps the host out of the training loop. Random crops and flips are drawn once per
epoch from a CPU ``torch.Generator`` (the same draws on any device, so a seed
reproduces a run) and applied to a whole batch at once with one gather. Inputs
are then normalised per channel and laid out channels_last, which is what
tensor-core convolutions want (CPU convolutions take it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from harness.data.classification import ClassificationData
    from harness.tasks.classification.protocol import ClassificationProtocol


def as_input(batch: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]."""
    return batch.float().div_(255)


def draw_crop_flip(n: int, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """(n, 3) int64: crop top and left in the padded image (0 .. 2*padding) and a flip bit."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = (
        torch.randint(0, 2, (n, 1), generator=generator)
        if flip
        else torch.zeros(n, 1, dtype=torch.int64)
    )
    return torch.cat([offsets, flips], dim=1)


def crop_flip(images: Tensor, draws: Tensor, padding: int) -> Tensor:
    """Zero-pad by ``padding``, crop back to size at the drawn offsets, flip where drawn.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` then
    ``RandomHorizontalFlip`` applied image by image, done as one indexed gather.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4) if padding else images
    draws = draws.to(images.device)
    rows = draws[:, :1] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(draws[:, 2:].bool(), w - 1 - cols, cols) + draws[:, 1:2]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class InputPipeline:
    """Turns uint8 batches into model inputs; augments training batches as the protocol says."""

    def __init__(
        self,
        data: ClassificationData,
        protocol: ClassificationProtocol,
        *,
        channels_last: bool = True,
    ) -> None:
        self.padding = protocol.crop_padding
        self.flip = protocol.hflip
        self.channels_last = channels_last
        self.shift = self.scale = None
        if data.mean is not None and data.std is not None:
            mean = torch.tensor(data.mean, device=data.train_x.device).view(1, -1, 1, 1)
            std = torch.tensor(data.std, device=data.train_x.device).view(1, -1, 1, 1)
            self.scale, self.shift = 1 / (255 * std), -mean / std

    @property
    def augments(self) -> bool:
        return self.padding > 0 or self.flip

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 images -> float input (no augmentation: for testing)."""
        if self.scale is None:
            x = as_input(images)
        else:
            x = torch.addcmul(self.shift, images.float(), self.scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def draw(self, n: int, generator: torch.Generator) -> Tensor | None:
        """One epoch's crops and flips (None when the protocol does not augment)."""
        return draw_crop_flip(n, self.padding, self.flip, generator) if self.augments else None

    def train(self, images: Tensor, draws: Tensor | None) -> Tensor:
        """A training batch: augmented with its slice of the epoch's draws, then prepared."""
        return self(images if draws is None else crop_flip(images, draws, self.padding))
