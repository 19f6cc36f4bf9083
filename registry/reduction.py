"""One concept for every way of shrinking the channel count at an insertion point.

An architecture marks the places where a reduction may sit. At each one it asks a
:class:`Reduction` how many maps the preceding conv should produce
(:meth:`Reduction.conv_channels`), which layer to insert (:meth:`Reduction.layer`)
and how many maps come out (:meth:`Reduction.out_channels`).

Kinds are an open registry. Two change the preceding conv and insert nothing:

``none``      nothing changes (the baseline).
``conv``      "dimension reduction of Conv": the preceding conv emits C / stride maps.

Every other kind is a factory ``(channels, stride) -> nn.Module`` mapping C maps to
C / stride, registered with :func:`register_reduction` (the built-ins below are, and so
is a user's own, from their file or installed package)::

    @register_reduction("channel_avg", flops={"aten::mean": my_handle})
    def channel_avg(channels: int, stride: int) -> nn.Module: ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._registry import load_entry_points, unknown_name

if TYPE_CHECKING:  # kinds and configs are read without torch; their layers need it
    from torch import nn

__all__ = [
    "TOPK_IMPLS",
    "Reduction",
    "ReductionKind",
    "list_reductions",
    "reduction_kind",
    "register_reduction",
]

# ``registry.ops.topk_pool``'s implementations, named here so that a command line lists
# them without importing torch
TOPK_IMPLS = ("auto", "reference", "bitonic")

Factory = Callable[[int, int], "nn.Module"]
# fvcore's handle signature, (inputs, outputs) -> count; kept as plain data here
FlopHandle = Callable[[list[Any], list[Any]], int]

_NAME = re.compile(r"[a-z][a-z0-9_]*")  # it becomes part of variant names and file names


@dataclass(frozen=True)
class ReductionKind:
    """A registered kind: its factory (None for the kinds that change the preceding conv
    instead), the FLOP handles its ops need and what it is."""

    name: str
    factory: Factory | None
    flops: Mapping[str, FlopHandle]
    description: str


_KINDS: dict[str, ReductionKind] = {}


def _add(kind: ReductionKind) -> None:
    if not isinstance(kind.name, str) or not _NAME.fullmatch(kind.name):
        raise ValueError(
            f"reduction name {kind.name!r} must be lower case letters, digits and _, "
            "starting with a letter (it becomes part of variant names)"
        )
    if kind.name in _KINDS:
        raise ValueError(f"reduction kind {kind.name!r} is already registered")
    bad = [op for op, handle in kind.flops.items() if "::" not in op or not callable(handle)]
    if bad:
        raise ValueError(
            f"reduction {kind.name!r}: flops must map op names such as 'aten::mean' to "
            f"callables (inputs, outputs) -> int; check {', '.join(map(repr, bad))}"
        )
    _KINDS[kind.name] = kind


def register_reduction(
    name: str, *, flops: Mapping[str, FlopHandle] | None = None, description: str = ""
) -> Callable[[Factory], Factory]:
    """Decorator registering a factory ``(channels, stride) -> nn.Module`` that maps C maps
    to C / stride, as reduction kind ``name``. ``flops``: FLOP handles for ops the module
    traces to that have none by default (``{"aten::op": handle}``, fvcore's signature).
    ``description`` defaults to the first line of the factory's docstring."""

    def decorate(factory: Factory) -> Factory:
        if not callable(factory):
            raise ValueError(f"reduction {name!r}: expected a factory (channels, stride)")
        text = description or (factory.__doc__ or "").strip().split("\n")[0]
        _add(ReductionKind(name, factory, MappingProxyType(dict(flops or {})), text))
        return factory

    return decorate


def list_reductions() -> list[str]:
    """Every registered kind (the built-ins, then plugins' in the order they registered)."""
    load_entry_points()
    return list(_KINDS)


def reduction_kind(name: str) -> ReductionKind:
    """A registered kind; unknown names get a ValueError naming the nearest valid one."""
    if name not in _KINDS:
        load_entry_points()
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(unknown_name("reduction kind", name, _KINDS)) from None


@dataclass(frozen=True)
class Reduction:
    """A reduction kind and its stride (channels in / channels out)."""

    kind: str = "none"
    stride: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ValueError(f"reduction kind must be a name, got {self.kind!r}")
        reduction_kind(self.kind)
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
        factory = reduction_kind(self.kind).factory
        if factory is None:
            from torch import nn

            return nn.Identity()
        self.out_channels(channels)  # the stride must divide the maps the factory gets
        return factory(channels, self.stride)


_add(ReductionKind("none", None, MappingProxyType({}), "nothing changes (the baseline)"))
_add(ReductionKind("conv", None, MappingProxyType({}), "the preceding conv emits C / stride maps"))


@register_reduction("fp_max")
def _fp_max(channels: int, stride: int) -> nn.Module:
    """Spatial feature pooling: max over groups of ``stride`` adjacent channels."""
    from .ops import FeaturePool

    return FeaturePool(stride, mode="max")


@register_reduction("fp_min")
def _fp_min(channels: int, stride: int) -> nn.Module:
    """Spatial feature pooling with min."""
    from .ops import FeaturePool

    return FeaturePool(stride, mode="min")


@register_reduction("topk")
def _topk(channels: int, stride: int) -> nn.Module:
    """Top-k feature pooling: the k = C / stride largest values per pixel."""
    from .ops import TopKPool

    return TopKPool(channels // stride, largest=True)


@register_reduction("topk_min")
def _topk_min(channels: int, stride: int) -> nn.Module:
    """Top-k feature pooling with the smallest values."""
    from .ops import TopKPool

    return TopKPool(channels // stride, largest=False)


@register_reduction("conv1x1")
def _conv1x1(channels: int, stride: int) -> nn.Module:
    """A learned 1x1 conv from C to C / stride maps (Network-in-Network style)."""
    from torch import nn

    return nn.Conv2d(channels, channels // stride, kernel_size=1)
