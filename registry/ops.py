"""Feature-pooling operators (Pei et al. 2020, section 3).

Both ops compress the channel axis of an (N, C, H, W) tensor at every pixel:

* ``feature_pool`` groups channels ``j*s .. j*s+s-1`` and keeps their max (or
  min): a max-pool whose window slides along channels instead of space.
* ``topk_pool`` keeps the k largest (or smallest) of all C values, sorted.

Gradients follow the selected element (one winner per output, as spatial
max-pooling routes them), so ties send the whole gradient to a single input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FeaturePool", "TopKPool", "feature_pool", "topk_pool"]


def _check_4d(x: Tensor, op: str) -> int:
    if x.dim() != 4:
        raise ValueError(f"{op} expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return x.shape[1]


def feature_pool(x: Tensor, stride: int, mode: str = "max") -> Tensor:
    """Max (or min) over non-overlapping groups of ``stride`` adjacent channels.

    Output channel j is the reduction over input channels j*stride .. j*stride+stride-1,
    so the output has C/stride channels. Works on any memory format (the channel
    split is a view, so channels_last inputs are not copied).
    """
    channels = _check_4d(x, "feature_pool")
    if mode not in ("max", "min"):
        raise ValueError(f"feature_pool mode must be 'max' or 'min', got {mode!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"feature_pool stride must be a positive integer, got {stride!r}")
    if channels % stride:
        raise ValueError(f"feature_pool: {channels} channels are not divisible by stride {stride}")
    if stride == 1:
        return x
    groups = x.unflatten(1, (channels // stride, stride))
    reduced = groups.max(dim=2) if mode == "max" else groups.min(dim=2)
    return reduced.values


def topk_pool(x: Tensor, k: int, largest: bool = True) -> Tensor:
    """The k largest (or smallest) values across all channels at each pixel, sorted.

    Output channel 0 holds the largest (or smallest) value. This is the reference
    implementation built on ``torch.topk``.
    """
    channels = _check_4d(x, "topk_pool")
    if not isinstance(k, int) or not 1 <= k <= channels:
        raise ValueError(f"topk_pool: k must be an integer in 1..{channels}, got {k!r}")
    return torch.topk(x, k, dim=1, largest=largest, sorted=True).values


class FeaturePool(nn.Module):
    """Module form of :func:`feature_pool` (parameter-free)."""

    def __init__(self, stride: int, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"FeaturePool mode must be 'max' or 'min', got {mode!r}")
        self.stride = stride
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return feature_pool(x, self.stride, self.mode)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mode={self.mode!r}"


class TopKPool(nn.Module):
    """Module form of :func:`topk_pool` keeping ``in_channels // stride`` maps."""

    def __init__(self, k: int, largest: bool = True) -> None:
        super().__init__()
        self.k = k
        self.largest = largest

    def forward(self, x: Tensor) -> Tensor:
        return topk_pool(x, self.k, self.largest)

    def extra_repr(self) -> str:
        return f"k={self.k}, largest={self.largest}"
