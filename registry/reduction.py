"""One concept for every way of shrinking the channel count at an insertion point.

An architecture marks the places where a reduction may sit. At each one it asks a
:class:`Reduction` how many maps the preceding conv should produce
(:meth:`Reduction.conv_channels`), which layer to insert (:meth:`Reduction.layer`)
and how many maps come out (:meth:`Reduction.out_channels`). The kinds:

``none``      nothing changes (the baseline).
``fp_max``    spatial feature pooling, max over groups of ``stride`` channels.
``fp_min``    the same with min.
``topk``      top-k feature pooling, k = C / stride largest values per pixel.
``topk_min``  top-k with the smallest values.
``conv``      "dimension reduction of Conv": the preceding conv emits C / stride maps.
``conv1x1``   a learned 1x1 conv from C to C / stride maps (Network-in-Network style).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .ops import FeaturePool, TopKPool

__all__ = ["KINDS", "Reduction"]

KINDS: tuple[str, ...] = ("none", "fp_max", "fp_min", "topk", "topk_min", "conv", "conv1x1")


@dataclass(frozen=True)
class Reduction:
    """A reduction kind and its stride (channels in / channels out)."""

    kind: str = "none"
    stride: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown reduction kind {self.kind!r}; choose one of {', '.join(KINDS)}"
            )
        if not isinstance(self.stride, int) or isinstance(self.stride, bool):
            raise ValueError(f"reduction stride must be an integer, got {self.stride!r}")
        if self.kind == "none" and self.stride != 1:
            raise ValueError("reduction kind 'none' takes stride 1")
        if self.kind != "none" and self.stride < 2:
            raise ValueError(
                f"reduction {self.kind!r} needs a stride of 2 or more, got {self.stride}"
            )

    @property
    def tag(self) -> str:
        """Short name used in variant names, e.g. ``fp_max_s2``."""
        return "baseline" if self.kind == "none" else f"{self.kind}_s{self.stride}"

    def out_channels(self, channels: int) -> int:
        """Maps leaving the insertion point when ``channels`` maps would arrive unreduced."""
        if channels % self.stride:
            raise ValueError(
                f"reduction {self.tag}: {channels} channels are not divisible by stride {self.stride}"
            )
        return channels // self.stride

    def conv_channels(self, channels: int) -> int:
        """Maps the conv just before the insertion point should produce."""
        return self.out_channels(channels) if self.kind == "conv" else channels

    def layer(self, channels: int) -> nn.Module:
        """The module placed at the insertion point, given the conv's ``channels``."""
        if self.kind in ("none", "conv"):
            return nn.Identity()
        out = self.out_channels(channels)
        if self.kind in ("fp_max", "fp_min"):
            return FeaturePool(self.stride, mode=self.kind[3:])
        if self.kind in ("topk", "topk_min"):
            return TopKPool(out, largest=self.kind == "topk")
        return nn.Conv2d(channels, out, kernel_size=1)
