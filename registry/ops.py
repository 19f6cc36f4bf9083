"""Feature-pooling operators (Pei et al. 2020, section 3).

Both ops compress the channel axis of an (N, C, H, W) tensor at every pixel:

* ``feature_pool`` groups channels ``j*s .. j*s+s-1`` and keeps their max (or
  min): a max-pool whose window slides along channels instead of space.
* ``topk_pool`` keeps the k largest (or smallest) of all C values, sorted.

Gradients follow the selected element (one winner per output, as spatial
max-pooling routes them), so ties send the whole gradient to a single input.
For top-k, equal values are ranked by channel (lower channel first), as a stable
sort ranks them; ``torch.topk`` leaves that order unspecified (on the CPU its
selection algorithm picks tied channels in no fixed order).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import bitonic
from .reduction import TOPK_IMPLS

__all__ = ["TOPK_IMPLS", "FeaturePool", "TopKPool", "feature_pool", "topk_pool"]

# The network issues about log2(C)^2 elementwise ops; with fewer input elements than
# this many per op, their fixed cost outweighs the gain over one sort call (CPU, measured).
_BITONIC_MIN_NUMEL_PER_OP = 2048


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


def topk_pool(x: Tensor, k: int, largest: bool = True, impl: str = "auto") -> Tensor:
    """The k largest (or smallest) values across all channels at each pixel, sorted.

    Output channel 0 holds the largest (or smallest) value. ``impl``:

    * ``"reference"``: a stable sort over channels, the definition the others match
      (values equal ``torch.topk``'s; ties ranked by channel).
    * ``"bitonic"``: a bitonic sorting network (:mod:`registry.bitonic`): for float32
      and 16-bit floats on the CPU in compiled code where it was built at install (at
      the paper's float32 shapes 0.7-1.7x spatial FP's time, with autograd or without),
      else in elementwise tensor ops (up to 2.3x forward, 3.2x with autograd), where
      ``torch.topk`` takes 4-8x (benchmarks/NOTES.md). Needs a power-of-two channel
      count, a float dtype (float16, bfloat16 or float32 when a gradient is needed)
      and no NaN.
    * ``"auto"``: bitonic where it is supported and pays off (CPU; the compiled
      kernel, or enough elements for the tensor ops; not being traced by a FLOP
      counter), else the reference. On CUDA the reference's sort kernels are used;
      the network has not been timed there.

    All three give the same values and route each output's gradient to the same input.
    """
    channels = _check_4d(x, "topk_pool")
    if not isinstance(k, int) or not 1 <= k <= channels:
        raise ValueError(f"topk_pool: k must be an integer in 1..{channels}, got {k!r}")
    if _topk_impl(x, impl) == "reference":
        return torch.sort(x, dim=1, descending=largest, stable=True).values[:, :k]
    if x.requires_grad and torch.is_grad_enabled():
        return bitonic.topk(x, k, largest)
    return bitonic.topk_values(x, k, largest)


def _topk_impl(x: Tensor, impl: str) -> str:
    """Resolve ``impl`` for this input; ValueError if bitonic is asked for and cannot run."""
    if impl not in TOPK_IMPLS:
        raise ValueError(f"topk_pool impl must be one of {', '.join(TOPK_IMPLS)}, got {impl!r}")
    if impl == "reference":
        return impl
    if impl == "auto":
        # a traced graph must hold one countable op (sizes are traced values there too)
        if x.device.type != "cpu" or torch.jit.is_tracing():
            return "reference"
        ops_pay = x.numel() >= _BITONIC_MIN_NUMEL_PER_OP * max(1, x.shape[1].bit_length() - 1) ** 2
        if not (ops_pay or bitonic.uses_kernel(x)):
            return "reference"
    problem = _bitonic_problem(x)
    if problem is None:
        return "bitonic"
    if impl == "bitonic":
        raise ValueError(f"topk_pool impl='bitonic' {problem}")
    return "reference"


def _bitonic_problem(x: Tensor) -> str | None:
    """Why the bitonic network cannot take ``x``, or None."""
    channels = x.shape[1]
    if channels & (channels - 1):
        return f"needs a power-of-two channel count, got {channels}"
    with_grad = x.requires_grad and torch.is_grad_enabled()
    if with_grad and x.dtype not in bitonic.BITS:
        return f"with gradients supports float16, bfloat16 and float32, got {x.dtype}"
    if not x.dtype.is_floating_point:
        return f"supports float dtypes, got {x.dtype}"
    # the sum is a cheap reduction; NaN there means NaN, or +inf and -inf, in x
    if torch.isnan(x.sum()) and torch.isnan(x).any():
        return "does not take NaN (the reference ranks NaN above everything)"
    return None


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
    """Module form of :func:`topk_pool` keeping ``in_channels // stride`` maps.

    ``impl`` is a plain attribute so a benchmark can switch a built model's layers.
    """

    def __init__(self, k: int, largest: bool = True, impl: str = "auto") -> None:
        super().__init__()
        self.k = k
        self.largest = largest
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        return topk_pool(x, self.k, self.largest, self.impl)

    def extra_repr(self) -> str:
        return f"k={self.k}, largest={self.largest}, impl={self.impl!r}"
