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
  multiply-add counts as one (MACs), plus the other arithmetic, one per operation:
  each comparison of a max/min reduction or pool (n - 1 per window of n), each output
  element of an elementwise op (activations, add, sub, mul, div, ...), n - 1 additions
  per sum of n and n per mean or average pool of n (the adds and the divide, as fvcore
  counts ``adaptive_avg_pool2d``), 3 per element of a softmax (an exp, an add to the sum,
  a divide); top-k counts C*ceil(log2 C) comparisons per pixel (a comparison sort over C
  channels). Ops that only move data (view, cat, stack, ...) count zero. An op without
  a handle is never counted as zero: the count is unknown (None) and one line names the
  op and the fix (:func:`register_flop_handle`, or ``flops=`` on a registered reduction).
"""

from __future__ import annotations

import importlib
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness.core import machine
from harness.core.lazy import lazy
from registry import list_reductions, reduction_kind

if TYPE_CHECKING:
    import torch
    from fvcore.nn import FlopCountAnalysis
    from torch import nn
else:  # commands that only read records never import torch (issue 29)
    torch = lazy("torch")


def _fvcore() -> tuple[ModuleType, ModuleType]:
    """fvcore's ``flop_count`` and ``jit_handles``, imported when FLOPs are first counted:
    with iopath and tabulate they would slow every command's start (issue 29)."""
    with warnings.catch_warnings():  # fvcore's import still touches torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        # the module, not the function of that name that fvcore.nn exports
        flop_count = importlib.import_module("fvcore.nn.flop_count")
        from fvcore.nn import jit_handles
    return flop_count, jit_handles


def get_shape(value: Any) -> list[int] | None:
    """fvcore's shape of a traced value (None for a non-tensor)."""
    return _fvcore()[1].get_shape(value)


# fvcore's signature: the traced op's input and output values -> its count
FlopHandle = Callable[[list[Any], list[Any]], int]

# Ops that only move, copy or reinterpret data (floor_divide appears as shape arithmetic
# when a traced module splits its channel axis): counted as zero; cat and stack copy.
_DATA_MOVEMENT_OPS = frozenset(
    "aten::" + op
    for op in (
        "view", "reshape", "flatten", "unflatten", "size", "contiguous", "permute",
        "transpose", "t", "to", "detach", "select", "slice", "expand", "squeeze",
        "unsqueeze", "cat", "Int", "ScalarImplicit", "numel", "dropout", "clone",
        "floor_divide", "stack", "chunk", "split", "split_with_sizes", "unbind", "narrow",
        "repeat", "flip", "roll", "constant_pad_nd", "pad", "pixel_shuffle",
        "pixel_unshuffle", "channel_shuffle", "type_as", "expand_as", "view_as",
        "reshape_as", "zeros_like", "ones_like", "zeros", "ones", "full", "arange",
        "alias", "copy_", "index_select", "gather", "movedim", "swapaxes", "_unsafe_view",
        "feature_dropout", "alpha_dropout",
    )
)  # fmt: skip


def _numel(value: Any) -> int:
    return math.prod(get_shape(value))


def _is_tensor(value: Any) -> bool:
    return get_shape(value) is not None


def _reduction_comparisons(inputs: list[Any], outputs: list[Any]) -> int:
    """Max/min over a window: every input element beyond the first in each window
    (the elementwise max/min of two tensors: one comparison per output element)."""
    if len(inputs) > 1 and _is_tensor(inputs[1]):
        return _numel(outputs[0])
    return _numel(inputs[0]) - _numel(outputs[0])


def _sum_additions(inputs: list[Any], outputs: list[Any]) -> int:
    return _numel(inputs[0]) - _numel(outputs[0])


def _input_elements(inputs: list[Any], outputs: list[Any]) -> int:
    """A mean of n: n - 1 additions and one divide per output, n per output in all."""
    return _numel(inputs[0])


def _avg_pool(inputs: list[Any], outputs: list[Any]) -> int:
    """Each output averages one kernel window: its size, adds and divide together."""
    return _numel(outputs[0]) * math.prod(inputs[1].toIValue())


def _elementwise(inputs: list[Any], outputs: list[Any]) -> int:
    return _numel(outputs[0])


def _softmax(inputs: list[Any], outputs: list[Any]) -> int:
    return 3 * _numel(outputs[0])


def _topk_comparisons(inputs: list[Any], outputs: list[Any]) -> int:
    shape = get_shape(inputs[0])
    dim = inputs[2].toIValue() if len(inputs) > 2 else -1
    length = shape[dim]
    return math.prod(shape) // length * length * max(1, math.ceil(math.log2(length)))


# ops counted as comparisons (max/min and their pools) and as one op per output element
_COMPARISON_OPS = tuple(
    "aten::" + op
    for op in (
        "max", "min", "amax", "amin", "argmax", "argmin", "max_pool1d", "max_pool2d",
        "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    )
)  # fmt: skip
_ELEMENTWISE_OPS = tuple(
    f"aten::{op}{inplace}"
    for op in (
        "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish",
        "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "softplus", "prelu",
        "add", "sub", "rsub", "mul", "div", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
        "pow", "square", "reciprocal", "clamp", "clamp_min", "clamp_max", "maximum",
        "minimum", "where", "masked_fill", "eq", "ne", "lt", "le", "gt", "ge",
    )
    for inplace in ("", "_")
)  # fmt: skip
_DEFAULT_HANDLES: Mapping[str, FlopHandle] = {
    **dict.fromkeys(_COMPARISON_OPS, _reduction_comparisons),
    "aten::topk": _topk_comparisons,
    # top-k pooling traces as a stable sort: sort.stable(self, stable, dim, descending)
    # has dim third, as topk(self, k, dim, ...) does, and costs the same comparisons
    "aten::sort": _topk_comparisons,
    "aten::sum": _sum_additions,
    "aten::mean": _input_elements,
    "aten::cumsum": _input_elements,
    "aten::adaptive_avg_pool1d": _input_elements,
    "aten::adaptive_avg_pool3d": _input_elements,
    **dict.fromkeys(("aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d"), _avg_pool),
    "aten::softmax": _softmax,
    "aten::log_softmax": _softmax,
    **dict.fromkeys(_ELEMENTWISE_OPS, _elementwise),
}
_REGISTERED: dict[str, FlopHandle] = {}


def register_flop_handle(op_name: str, handle: FlopHandle) -> None:
    """Count the traced op ``op_name`` (``"aten::erf"``, or ``"prim::PythonOp.MyFn"`` for
    an autograd Function) with ``handle(inputs, outputs) -> int``, fvcore's signature
    (``fvcore.nn.jit_handles.get_shape`` reads a value's shape). Counts follow the module
    docstring's convention. An op that already has a handle is refused, so the built-in
    models' counts cannot change."""
    if "::" not in op_name or not callable(handle):
        raise ValueError(
            f"register_flop_handle needs an op name such as 'aten::erf' and a callable "
            f"(inputs, outputs) -> int, got {op_name!r} and {handle!r}"
        )
    if (
        op_name in _fvcore()[0]._DEFAULT_SUPPORTED_OPS
        or op_name in _DEFAULT_HANDLES
        or op_name in _REGISTERED
    ):
        raise ValueError(f"{op_name} already has a FLOP handle")
    _REGISTERED[op_name] = handle


def flop_handles() -> dict[str, FlopHandle]:
    """The handles a count adds to fvcore's: the defaults above, those registered with
    :func:`register_flop_handle`, then registered reductions' ``flops`` for ops that still
    have none (an op's handle applies wherever it appears in a model)."""
    handles = {**_DEFAULT_HANDLES, **_REGISTERED}
    supported = _fvcore()[0]._DEFAULT_SUPPORTED_OPS
    for kind in list_reductions():
        for op, handle in reduction_kind(kind).flops.items():
            if op not in supported:
                handles.setdefault(op, handle)
    return handles


class UncountedOps(RuntimeError):
    """A model traces to ops that no handle counts; ``ops`` maps each to its calls."""

    def __init__(self, ops: Mapping[str, int]) -> None:
        self.ops = dict(ops)
        names = ", ".join(f"{op} ({n} call{'s' * (n != 1)})" for op, n in self.ops.items())
        first = next(iter(self.ops))
        super().__init__(
            f"no FLOP handle for {names}; flops are unknown: count it with "
            f'harness.train.measure.register_flop_handle("{first}", fn) or '
            f'register_reduction(..., flops={{"{first}": fn}})'
        )


def strict_flop_count(model: nn.Module, inputs: Any) -> FlopCountAnalysis:
    """fvcore's analysis with every compute op either counted or reported as unsupported."""
    analysis = _fvcore()[0].FlopCountAnalysis(model, inputs)
    # fvcore silently skips a fixed list of ops (aten::max and aten::relu among
    # them); keep skipping only those that move data.
    analysis._ignored_ops = set(_DATA_MOVEMENT_OPS)
    analysis.set_op_handle(**flop_handles())
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """True forward FLOPs (MACs) for one input of ``input_shape`` (no batch dim); raises
    :class:`UncountedOps` rather than counting an op without a handle as zero."""
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
        raise UncountedOps(unsupported)
    return int(total)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def flops_or_unknown(
    model: nn.Module, input_shape: tuple[int, ...], say: Callable[[str], None] = _stderr
) -> int | None:
    """:func:`count_flops`, or None (unknown) and one line saying which op and the fix:
    a model whose cost cannot be counted still trains and is reported."""
    try:
        return count_flops(model, input_shape)
    except UncountedOps as exc:
        say(f"{type(model).__name__}: {exc}")
        return None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_conv_weights(model: nn.Module) -> int:
    """Kernel weights of every (transposed) convolution: no biases, no BN, no FC."""
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.modules.conv._ConvNd) and m.weight.requires_grad
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


def gpu_id(device: torch.device) -> str | None:
    """The UUID nvidia-smi knows ``device`` by (None off CUDA, or where torch has none)."""
    if device.type != "cuda":
        return None
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return None if uuid is None else f"GPU-{uuid}"


class MachineWatch:
    """The machine's state over a timed phase (:func:`harness.core.machine.state`): a
    sample before it and one after, the GPU read only at the end. ``state`` is None
    until the phase ends."""

    def __init__(self, device: torch.device) -> None:
        self.gpu = gpu_id(device)
        self.state: dict[str, Any] | None = None
        self._start: machine.Sample | None = None

    def start(self) -> MachineWatch:
        self._start = machine.sample()
        return self

    def stop(self) -> dict[str, Any]:
        assert self._start is not None
        self.state = machine.state(self._start, machine.sample(self.gpu))
        return self.state

    def __enter__(self) -> MachineWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timing_fields(
    epoch_times: list[float], epoch_states: list[dict[str, Any]],
    test_times: list[float], test_state: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """A record's ``timing``: the cores and torch threads a cell had, and per phase its
    replicates' IQR/median and the machine's state while they ran (one state per epoch;
    None where not every epoch has one, e.g. epochs resumed from an older checkpoint)."""
    return {
        "cores": machine.cpus(),
        "threads": torch.get_num_threads(),
        "train": {
            "spread": machine.spread(machine.steady(epoch_times)),
            "states": epoch_states if len(epoch_states) == len(epoch_times) else None,
        },
        "test": {
            "spread": machine.spread(test_times),
            "states": [test_state] if test_state is not None else None,
        },
    }


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
