"""Every measurement in one place: parameters, FLOPs (true and the paper's), timing.

Conventions, stated once and shown in the reports:

* ``params``: exact count of trainable parameters (weights, biases, BN gamma/beta).
* ``params_M_paper_conv``: the paper's "Parameters" in units of 2^20: all trainable
  parameters, except under the ``2x_conv_weights`` rule (conv kernel weights only).
* ``flops_paper_conv``: the paper's "FLOPs", which is not a per-image cost but about
  twice a parameter count (a graph-profiler artefact), chosen per table:
  ``2x_params`` 2 x all trainable parameters (Tables 2-3), ``2x_weights`` 2 x the
  weights without biases (Table 1), ``2x_conv_weights`` 2 x the conv kernel weights,
  no biases and no BN (the denoiser, Table 5: 70,994,880 -> 67.71 and 1.42e8).
* ``flops``: the true forward cost of one image, counted by fvcore where one
  multiply-add counts as one (MACs), plus the elementwise ops below (MACs +
  elementwise ops). Ops fvcore does not count are given handles
  here: each comparison in max/min reductions counts one, as does each output element
  of ReLU, tanh, add, sub, mul and div; top-k counts
  C*ceil(log2 C) comparisons per pixel (a comparison sort over C channels). Any op
  left without a handle raises instead of being counted as zero.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.core.lazy import lazy

if TYPE_CHECKING:
    from fvcore.nn import FlopCountAnalysis, jit_handles
else:  # fvcore (and iopath, tabulate) are imported when FLOPs are first counted
    jit_handles = lazy("fvcore.nn.jit_handles")

# Ops that only move or reinterpret data (floor_divide appears as shape arithmetic
# when a traced module splits its channel axis); everything else must have a handle.
_DATA_MOVEMENT_OPS = frozenset(
    "aten::" + op
    for op in (
        "view", "reshape", "flatten", "unflatten", "size", "contiguous", "permute",
        "transpose", "t", "to", "detach", "select", "slice", "expand", "squeeze",
        "unsqueeze", "cat", "Int", "ScalarImplicit", "numel", "dropout", "clone",
        "floor_divide",
    )
)  # fmt: skip


def _numel(value: Any) -> int:
    return math.prod(jit_handles.get_shape(value))


def _reduction_comparisons(inputs: list[Any], outputs: list[Any]) -> int:
    """Max/min over a window: every input element beyond the first in each window."""
    return _numel(inputs[0]) - _numel(outputs[0])


def _elementwise(inputs: list[Any], outputs: list[Any]) -> int:
    return _numel(outputs[0])


def _topk_comparisons(inputs: list[Any], outputs: list[Any]) -> int:
    shape = jit_handles.get_shape(inputs[0])
    dim = inputs[2].toIValue() if len(inputs) > 2 else -1
    length = shape[dim]
    return math.prod(shape) // length * length * max(1, math.ceil(math.log2(length)))


_EXTRA_HANDLES = {
    "aten::max": _reduction_comparisons,
    "aten::min": _reduction_comparisons,
    "aten::amax": _reduction_comparisons,
    "aten::amin": _reduction_comparisons,
    "aten::max_pool2d": _reduction_comparisons,
    "aten::topk": _topk_comparisons,
    # top-k pooling traces as a stable sort: sort.stable(self, stable, dim, descending)
    # has dim third, as topk(self, k, dim, ...) does, and costs the same comparisons
    "aten::sort": _topk_comparisons,
    "aten::relu": _elementwise,
    "aten::relu_": _elementwise,
    "aten::add": _elementwise,
    "aten::add_": _elementwise,
    "aten::sub": _elementwise,
    "aten::mul": _elementwise,
    "aten::div": _elementwise,
    "aten::tanh": _elementwise,
}


def strict_flop_count(model: nn.Module, inputs: Any) -> FlopCountAnalysis:
    """fvcore's analysis with every compute op either counted or reported as unsupported."""
    with warnings.catch_warnings():  # fvcore's import still touches torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    # fvcore silently skips a fixed list of ops (aten::max and aten::relu among
    # them); keep skipping only those that move data.
    analysis._ignored_ops = set(_DATA_MOVEMENT_OPS)
    analysis.set_op_handle(**_EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """True forward FLOPs (MACs) for one input of ``input_shape`` (no batch dim)."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        example = torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device)
        analysis = strict_flop_count(model, example)
        total = analysis.total()
        unsupported = analysis.unsupported_ops()
    finally:
        model.train(was_training)
    if unsupported:
        raise RuntimeError(
            f"fvcore has no FLOP handle for {dict(unsupported)}; add one in harness/train/measure.py "
            "rather than counting it as zero"
        )
    return int(total)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_conv_weights(model: nn.Module) -> int:
    """Kernel weights of every (transposed) convolution: no biases, no BN, no FC."""
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd) and m.weight.requires_grad
    )


def paper_convention(model: nn.Module, rule: str) -> dict[str, float]:
    """The paper's "Parameters" (2^20 units) and "FLOPs" (see module docstring)."""
    params = count_params(model)
    if rule == "2x_conv_weights":
        params = flop_base = count_conv_weights(model)
    elif rule == "2x_params":
        flop_base = params
    elif rule == "2x_weights":
        flop_base = sum(
            p.numel()
            for n, p in model.named_parameters()
            if p.requires_grad and not n.endswith("bias")
        )
    else:
        raise ValueError(f"unknown paper FLOP rule {rule!r}")
    return {"params_M_paper_conv": params / 2**20, "flops_paper_conv": float(2 * flop_base)}


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates synchronised wall time over several timed sections."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = 0.0
        self._start: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        assert self._start is not None
        self.elapsed += time.perf_counter() - self._start
        self._start = None


def median_time(
    fn: Callable[[], Any], device: torch.device, *, repeats: int = 3, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median synchronised wall time of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        with Stopwatch(device) as watch:
            fn()
        times.append(watch.elapsed)
    return statistics.median(times), times
