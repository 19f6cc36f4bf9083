"""``python -m harness bench``: every reduction op at the paper's shapes, and a Table 1 epoch.

What is timed, and how:

* Ops: spatial feature pooling (max, min), top-k feature pooling, conv dimension
  reduction (the 3x3 conv that emits C/s maps) and a 1x1 conv from C to C/s maps,
  each at the tensors the paper's networks feed them (:data:`CASES`). ``fwd`` is an
  inference forward (no autograd); ``fwdbwd`` is a forward with autograd plus the
  backward of a fixed upstream gradient (to the input, and to the weights of convs).
* Timing: adaptive repeats, as ``torch.utils.benchmark``'s ``adaptive_autorange``
  but in short blocks of calls (:data:`BLOCK_S`, so that on a busy machine most
  blocks fall inside one scheduler time slice): blocks are added until their
  IQR/median is below :data:`NOISY` or the time budget is spent (``--quick``: a far
  smaller budget, small shapes and one thread on a CPU, so its figures are
  indicative). Every record carries IQR/median and is flagged ``noisy`` above
  :data:`NOISY`. The device is synchronised around every block, so CUDA work is
  inside the time.
* Ratios (top-k over spatial FP, and the Table 1 epoch): the two sides run in turns,
  A, B, A, B, ..., and the ratio is the median of the pairwise ratios, so a change in
  the machine's load during the run hits both sides of a pair alike and cancels.
* Bytes: the least traffic any kernel needs, each input, weight and output read or
  written once (``fwdbwd``: twice that, the gradients mirroring the tensors). GB/s
  is bytes over the median, shown against the device's copy bandwidth measured in
  the same run (a large tensor copied into another: read plus write).
* FLOPs (forward, harness conventions): one per comparison for pooling
  (top-k: C*ceil(log2 C) per pixel, a comparison sort) and one per multiply-add
  for convs; a conv's backward adds twice its forward, pooling's routes without
  arithmetic.
* Epoch ratio: the harness's training loop (:func:`harness.tasks.classification.engine.train_classifier`,
  Table 1's optimiser and batch) on random digits of MNIST's shape, a fixed number of
  steps per epoch, the two variants taking turns; the median over rounds of
  ``mnist.topk_s2``'s epoch over ``mnist.fp_max_s2``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import machine
from harness.core.lazy import lazy
from harness.core.machine import NOISY  # IQR / median above this: flagged noisy
from harness.core.runtime import resolve_device
from harness.data.classification import ClassificationData
from harness.store.records import check_writable_dir, environment
from harness.tables.paper import TABLE1
from harness.tools import save_result
from harness.train.measure import synchronize
from registry import create_model
from registry.reduction import TOPK_IMPLS

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # the CLI builds this command's parser without importing torch (issue 29)
    torch, nn = lazy("torch"), lazy("torch.nn")

OPS = ("spatial_max", "spatial_min", "topk", "conv_reduction", "conv1x1")
PASSES = ("fwd", "fwdbwd")
EPOCH_VARIANTS = ("mnist.topk_s2", "mnist.fp_max_s2")

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Case:
    """A reduction point of one of the paper's networks: the maps it receives."""

    name: str
    maps: Shape  # (N, C, H, W) entering the pooling ops and the 1x1 conv
    conv_in: Shape  # input of the conv that emits C / stride maps instead of C
    stride: int = 2


# Batch sizes are the paper's (MNIST 100, VGG-16 250); the denoiser's 32 at 224x224
# is cut to 2 to fit a CPU. VGG-16 on CIFAR-10: FP after block X's max pool (X <= 4)
# or after block 5's last conv, whose input is the block's own width before the
# pool. The denoiser's blocks before FP are multi-branch; a 3x3 conv from the same
# maps stands in for "emit fewer maps" there.
CASES = (
    Case("mnist.conv2", (100, 32, 28, 28), (100, 16, 28, 28)),
    Case("vgg16.block1", (250, 64, 16, 16), (250, 64, 32, 32)),
    Case("vgg16.block2", (250, 128, 8, 8), (250, 128, 16, 16)),
    Case("vgg16.block3", (250, 256, 4, 4), (250, 256, 8, 8)),
    Case("vgg16.block4", (250, 512, 2, 2), (250, 512, 4, 4)),
    Case("vgg16.block5", (250, 512, 2, 2), (250, 512, 2, 2)),
    Case("denoiser.fp1", (2, 256, 224, 224), (2, 256, 224, 224)),
    Case("denoiser.fp2", (2, 128, 224, 224), (2, 128, 224, 224)),
)


def _shrunk(case: Case) -> Case:
    """Batch 2 and at most 16x16 pixels: the same channels, seconds for all cases."""

    def small(shape: Shape) -> Shape:
        n, c, h, w = shape
        return (min(n, 2), c, min(h, 16), min(w, 16))

    return dataclasses.replace(case, maps=small(case.maps), conv_in=small(case.conv_in))


QUICK_CASES = tuple(_shrunk(case) for case in CASES)


def cases(quick: bool) -> tuple[Case, ...]:
    return QUICK_CASES if quick else CASES


@dataclass
class Workload:
    """One op at one case, ready to time: ``step`` queues it once; ``fn`` also waits for it."""

    step: Callable[[], None]
    shape: tuple[int, ...]
    bytes: int
    flops: int
    device: torch.device
    dtype: torch.dtype

    def fn(self) -> None:
        """One call, synchronised: what pytest-benchmark times."""
        self.step()
        synchronize(self.device)

    @property
    def info(self) -> dict[str, Any]:
        """What a benchmark record carries besides its timings."""
        return {"shape": list(self.shape), "dtype": str(self.dtype).removeprefix("torch."),
                "device": self.device.type, "bytes": self.bytes, "flops": self.flops}  # fmt: skip


def _module(op: str, case: Case, topk_impl: str) -> tuple[nn.Module, Shape, Shape]:
    """The op as a module (top-k with ``topk_impl``), its input shape and its output shape."""
    from registry.ops import FeaturePool, TopKPool

    n, c, h, w = case.maps
    out = (n, c // case.stride, h, w)
    if op in ("spatial_max", "spatial_min"):
        return FeaturePool(case.stride, mode=op.removeprefix("spatial_")), case.maps, out
    if op == "topk":
        return TopKPool(c // case.stride, impl=topk_impl), case.maps, out
    if op == "conv1x1":
        return nn.Conv2d(c, c // case.stride, 1), case.maps, out
    if op == "conv_reduction":
        cn, cc, ch, cw = case.conv_in
        return (
            nn.Conv2d(cc, c // case.stride, 3, padding=1),
            case.conv_in,
            (cn, c // case.stride, ch, cw),
        )
    raise ValueError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")


def _forward_flops(op: str, module: nn.Module, shape: Shape, out: Shape) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return math.prod(out) * module.in_channels * kh * kw
    n, c, h, w = shape
    if op == "topk":
        return n * h * w * c * max(1, math.ceil(math.log2(c)))
    return math.prod(shape) - math.prod(out)  # stride-1 comparisons per output


def workload(
    op: str,
    case: Case,
    pass_: str,
    device: torch.device,
    dtype: torch.dtype | None = None,
    topk_impl: str = "auto",
    compiled: bool = False,
) -> Workload:
    """Build ``op`` at ``case`` on ``device`` for one pass (``fwd`` or ``fwdbwd``), in
    ``dtype`` (default float32).

    ``compiled``: the op's module under ``torch.compile`` (one graph, static shapes), compiled
    afresh (dynamo's cache emptied, so no earlier shape counts towards its recompile
    limit) on the first call, which the timing functions make untimed.
    """
    if pass_ not in PASSES:
        raise ValueError(f"unknown pass {pass_!r}; choose one of {', '.join(PASSES)}")
    dtype = dtype or torch.float32
    module, shape, out_shape = _module(op, case, topk_impl)
    module = module.to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    # ReLU'd maps, as the paper's networks feed the reduction (ties included)
    x = torch.randn(shape, generator=gen, dtype=dtype).relu_().to(device)
    weights = sum(p.numel() for p in module.parameters())
    size = torch.finfo(dtype).bits // 8
    moved = (math.prod(shape) + weights + math.prod(out_shape)) * size
    flops = _forward_flops(op, module, shape, out_shape)
    conv = isinstance(module, nn.Conv2d)
    if compiled:
        torch._dynamo.reset()
        module = torch.compile(module, dynamic=False, fullgraph=True)
    if pass_ == "fwd":

        def run() -> None:
            with torch.no_grad():
                module(x)

        return Workload(run, shape, moved, flops, device, dtype)

    x.requires_grad_()
    upstream = torch.randn(out_shape, generator=gen, dtype=dtype).to(device)

    def run_backward() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).backward(upstream)

    return Workload(run_backward, shape, 2 * moved, flops * (3 if conv else 1), device, dtype)


# Wall-time budget (s) of one op's timing and of one interleaved ratio: full, quick
OP_BUDGET_S = {False: 1.0, True: 0.1}
RATIO_BUDGET_S = {False: 1.0, True: 0.4}
MIN_BLOCKS, MIN_ROUNDS = 10, 10  # enough for a median, unless the budget runs out first
# A timed block of calls lasts about this long: short enough that on a busy machine most
# blocks fall inside one scheduler time slice (a few ms), so their median is the op's.
BLOCK_S = 5e-4
QUICK_NOTE = (
    "quick: small shapes, a short time budget, one thread on a CPU; figures are indicative only"
)


@dataclass(frozen=True)
class Estimate:
    """A median and its interquartile range over ``n`` measurements."""

    median: float
    iqr: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        return cls(statistics.median(values), q3 - q1, len(values))

    @property
    def spread(self) -> float:
        """IQR / median: above :data:`NOISY` the median is not to be trusted."""
        return self.iqr / self.median

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY


def _per_call(step: Callable[[], object], device: torch.device, calls: int) -> float:
    """Seconds per call of ``calls`` calls of ``step``, the device synchronised around them."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def _calls_per_block(step: Callable[[], object], device: torch.device) -> int:
    """Calls that take about BLOCK_S; from the fastest of three calls (a slow one was
    interrupted), after one warm-up call."""
    step()
    fastest = min(_per_call(step, device, 1) for _ in range(3))
    return max(1, round(BLOCK_S / fastest))


def time_fn(step: Callable[[], object], device: torch.device, quick: bool) -> Estimate:
    """Seconds per call of ``step``: median and IQR over blocks of calls.

    Adaptive repeats, as ``torch.utils.benchmark``'s ``adaptive_autorange`` but with
    short blocks (:data:`BLOCK_S`): blocks are added until there are MIN_BLOCKS and
    their IQR/median is below :data:`NOISY`, or until the budget
    (:data:`OP_BUDGET_S`) is spent (at least three blocks).
    """
    calls = _calls_per_block(step, device)
    times, start = [], time.perf_counter()
    while True:
        times.append(_per_call(step, device, calls))
        estimate = Estimate.of(times)
        if len(times) >= MIN_BLOCKS and not estimate.noisy:
            return estimate
        if len(times) >= 3 and time.perf_counter() - start > OP_BUDGET_S[quick]:
            return estimate


def interleaved_ratio(
    a: Callable[[], object], b: Callable[[], object], device: torch.device, budget_s: float
) -> Estimate:
    """Time of ``a`` over time of ``b``: the median of pairwise ratios over rounds.

    Each round times a block of ``a`` then a block of ``b`` (A, B, A, B, ...), both
    about :data:`BLOCK_S` long, so a change in the machine's load hits both halves of a
    pair alike and cancels in their ratio, and a pair one half of which was
    interrupted is an outlier the median ignores. Rounds go on until ``budget_s`` is
    spent, and number at least MIN_ROUNDS.
    """
    calls = [_calls_per_block(fn, device) for fn in (a, b)]
    ratios, start = [], time.perf_counter()
    while len(ratios) < MIN_ROUNDS or time.perf_counter() - start < budget_s:
        ratios.append(_per_call(a, device, calls[0]) / _per_call(b, device, calls[1]))
    return Estimate.of(ratios)


def topk_ratio(
    case: Case, pass_: str, device: torch.device, quick: bool, topk_impl: str = "auto",
    compiled: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Top-k (``topk_impl``, under torch.compile if ``compiled``) over spatial FP (max) at
    ``case``, interleaved."""
    topk = workload("topk", case, pass_, device, topk_impl=topk_impl, compiled=compiled)
    spatial = workload("spatial_max", case, pass_, device)
    ratio = interleaved_ratio(topk.step, spatial.step, device, RATIO_BUDGET_S[quick])
    return {"case": case.name, "shape": list(case.maps), "pass": pass_, "topk_impl": topk_impl,
            "compiled": compiled, **_fields(ratio, "ratio", "ratio_iqr", "rounds")}  # fmt: skip


def _fields(estimate: Estimate, median: str, iqr: str, count: str) -> dict[str, Any]:
    """An estimate as record fields under these names, with IQR/median and the noisy flag."""
    return {median: estimate.median, iqr: estimate.iqr, "iqr_over_median": estimate.spread,
            "noisy": estimate.noisy, count: estimate.n}  # fmt: skip


def copy_bandwidth(device: torch.device, nbytes: int, quick: bool) -> float:
    """GB/s of copying a ``nbytes`` tensor into another (bytes read plus bytes written).

    The destination is allocated once: a fresh one per call would time page faults.
    """
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)

    return 2 * src.numel() * 4 / time_fn(lambda: dst.copy_(src), device, quick).median / 1e9


def _random_digits(n_train: int, n_test: int, device: torch.device) -> ClassificationData:
    gen = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (n_train + n_test, 1, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_train + n_test,), generator=gen)
    return ClassificationData(
        digits[:n_train], labels[:n_train], digits[n_train:], labels[n_train:],
        "random digits of MNIST's shape",
    ).to(device)  # fmt: skip


def epoch_times(
    device: torch.device, steps: int, batch_size: int, rounds: int, topk_impl: str = "auto"
) -> tuple[dict[str, float], Estimate]:
    """Median epoch (``steps`` steps of Table 1's protocol) of each of EPOCH_VARIANTS, and
    the first variant's epoch over the second's, the median of one ratio per round.

    The variants take turns, one epoch each per round, so a change in the machine's
    load during the run hits both alike.
    """
    from harness.tasks.classification.engine import train_classifier
    from registry.ops import TopKPool

    protocol = dataclasses.replace(
        TABLE1.protocol("paper"), epochs=1, batch_size=batch_size,
        eval_points_per_epoch=1, test_batch_size=batch_size, test_repeats=1,
    )  # fmt: skip
    data = _random_digits(steps * batch_size, batch_size, device)
    models = {}
    for variant in EPOCH_VARIANTS:
        torch.manual_seed(0)
        models[variant] = create_model(variant).to(device)
        for layer in models[variant].modules():
            if isinstance(layer, TopKPool):
                layer.impl = topk_impl
    times: dict[str, list[float]] = {variant: [] for variant in EPOCH_VARIANTS}
    for seed in range(rounds):
        for variant, model in models.items():
            result = train_classifier(model, data, protocol, seed=seed, device=device)
            times[variant] += result.epoch_times_s
    first, second = (times[variant] for variant in EPOCH_VARIANTS)
    ratio = Estimate.of([a / b for a, b in zip(first, second, strict=True)])
    return {variant: statistics.median(epochs) for variant, epochs in times.items()}, ratio


# (steps per epoch, batch size, rounds) of the epoch ratio, and the copy's size
EPOCH_FULL, EPOCH_QUICK = (20, 100, 5), (2, 10, 3)
COPY_BYTES_FULL, COPY_BYTES_QUICK = 256 << 20, 16 << 20


def run_bench(
    device: torch.device,
    quick: bool,
    topk_impl: str = "auto",
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Time everything; the JSON-ready result (see module doc and README).

    ``quick`` on a CPU times with one thread: on a busy machine waking a second
    OpenMP thread costs more than a small op (spatial FP on 2x32x16x16: 27 us alone,
    50 ms right after a top-k call, with two threads at a load average of 16).
    """
    load_before = os.getloadavg()
    with timing_threads(device, quick):
        result = _run_bench(device, quick, topk_impl, log)
    # the machine's state: on a shared machine a noisy figure is explained by this
    return {**result, "load_average": {"before": load_before, "after": os.getloadavg(),
                                       "cpus": os.cpu_count()}}  # fmt: skip


@contextlib.contextmanager
def timing_threads(device: torch.device, quick: bool) -> Iterator[None]:
    """Torch's CPU threads while timing: one for quick runs on a CPU, else as a run's
    cell would have them (:func:`harness.core.machine.torch_threads`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1 if quick and device.type == "cpu" else machine.torch_threads(before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_bench(
    device: torch.device, quick: bool, topk_impl: str, log: Callable[[str], None]
) -> dict[str, Any]:
    bandwidth = copy_bandwidth(device, COPY_BYTES_QUICK if quick else COPY_BYTES_FULL, quick)
    results, ratios = [], []
    for case in cases(quick):
        log(f"timing {case.name} {list(case.maps)}")
        for op in OPS:
            for pass_ in PASSES:
                load = workload(op, case, pass_, device, topk_impl=topk_impl)
                timing = time_fn(load.step, device, quick)
                results.append({"case": case.name, "op": op, "pass": pass_, **load.info,
                                **_fields(timing, "median_s", "iqr_s", "blocks"),
                                "gbps": load.bytes / timing.median / 1e9})  # fmt: skip
        ratios += [topk_ratio(case, pass_, device, quick, topk_impl) for pass_ in PASSES]
    log("timing a Table 1 epoch (top-k and spatial FP)")
    epochs, epoch_ratio = epoch_times(
        device, *(EPOCH_QUICK if quick else EPOCH_FULL), topk_impl=topk_impl
    )
    return {
        "env": environment(device),
        "quick": quick,
        "indicative": quick,
        "noisy_above_iqr_over_median": NOISY,
        "topk_impl": topk_impl,
        "threads": torch.get_num_threads(),
        "copy_bandwidth_gbps": bandwidth,
        "results": results,
        "op_ratios_topk_over_spatial": ratios,
        "epoch_s": epochs,
        "epoch_ratio_topk_over_spatial": epoch_ratio.median,
        "epoch_ratio": _fields(epoch_ratio, "ratio", "ratio_iqr", "rounds"),
    }


def _load_line(bench: dict[str, Any]) -> str:
    """The load average (1, 5, 15 min) before and after, against the CPU count."""
    load = bench.get("load_average")
    if load is None:  # a result saved before it was recorded
        return "Load average: not recorded."

    def show(values: list[float]) -> str:
        return ", ".join(f"{x:.1f}" for x in values)

    return (f"Load average before: {show(load['before'])}; after: {show(load['after'])} "
            f"({load['cpus']} CPUs; above the CPU count, other processes shared them).")  # fmt: skip


def _flag(record: dict[str, Any]) -> str:
    return "noisy" if record["noisy"] else ""


def render_markdown(bench: dict[str, Any]) -> str:
    """The results as a Markdown report with the environment and the ratios."""
    env, copy = bench["env"], bench["copy_bandwidth_gbps"]
    lines = [
        f"# Feature-pooling op benchmark{f' ({QUICK_NOTE})' if bench['quick'] else ''}",
        "",
        f"Device: {env['device_name']} ({env['device']}); torch {env['torch']}; "
        f"top-k implementation: {bench['topk_impl']} (bitonic: {env['topk']}); float32.",
        f"Copy bandwidth (large tensor copy, read + write): {copy:.1f} GB/s.",
        _load_line(bench),
        f'Medians over adaptive repeats; "noisy": IQR/median above {NOISY}.',
        "",
        "| case | op | input shape | pass | median ms | IQR ms | IQR/median | GB/s | % of copy | |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in bench["results"]:
        lines.append(
            f"| {r['case']} | {r['op']} | {'x'.join(map(str, r['shape']))} | {r['pass']} | "
            f"{r['median_s'] * 1e3:.3f} | {r['iqr_s'] * 1e3:.3f} | {r['iqr_over_median']:.2f} | "
            f"{r['gbps']:.2f} | {100 * r['gbps'] / copy:.0f} | {_flag(r)} |"
        )
    lines += [
        "",
        "Top-k / spatial FP (max), op time: the two timed in turns, the median of pairwise ratios:",
        "",
        "| case | pass | ratio | IQR/median | rounds | |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['case']} | {r['pass']} | {r['ratio']:.2f} | {r['iqr_over_median']:.2f} | "
        f"{r['rounds']} | {_flag(r)} |"
        for r in bench["op_ratios_topk_over_spatial"]
    ]
    epochs, ratio = bench["epoch_s"], bench["epoch_ratio"]
    lines += [
        "",
        "Table 1 epoch (harness training loop, random digits, fixed steps, the variants "
        "taking turns): "
        + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in epochs.items())
        + f"; top-k / spatial = {ratio['ratio']:.2f} (median of {ratio['rounds']} rounds, "
        f"IQR/median {ratio['iqr_over_median']:.2f}{', noisy' if ratio['noisy'] else ''}).",
        "",
    ]
    return "\n".join(lines)


def save(bench: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the JSON and Markdown under ``out_dir``, named by device and time."""
    check_writable_dir(out_dir, "--out")
    name = f"bench-{bench['env']['device']}{'-quick' if bench['quick'] else ''}"
    return save_result(bench, out_dir, name, render_markdown(bench))


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bench`` subcommand's arguments."""
    bench = sub.add_parser("bench", help="time the reduction ops and a Table 1 epoch")
    bench.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small shapes, short timings, one CPU thread: indicative figures",
    )
    bench.add_argument("--format", choices=("md", "json"), default="md", help="standard output")
    bench.add_argument("--topk-impl", choices=TOPK_IMPLS, default="auto",
                       help="top-k implementation to time (reference: the plain stable sort)")  # fmt: skip
    bench.add_argument("--out", type=Path, default=Path("reports") / "bench",
                       help="folder for the saved JSON and Markdown (default reports/bench/)")  # fmt: skip


def cmd_bench(args: argparse.Namespace) -> None:
    """Run the benchmark, print it as Markdown or JSON, save both under --out."""
    device = resolve_device(args.device)
    check_writable_dir(args.out, "--out")
    bench = run_bench(device, args.quick, args.topk_impl, log=lambda m: print(m, file=sys.stderr))
    paths = save(bench, args.out)
    print(json.dumps(bench, indent=2) if args.format == "json" else render_markdown(bench))
    print(f"wrote {' and '.join(map(str, paths))}", file=sys.stderr)
