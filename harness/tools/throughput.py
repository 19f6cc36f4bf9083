"""Images/s of the harness's training path against a stock torchvision-style loop.

The harness keeps a table's uint8 images on the device and cuts, augments and
normalises whole batches there (``ClassifierSteps``, ``InputPipeline``), so no
DataLoader sits in its training loop. This measures what that buys, as a ratio, by
training the same model the two ways on the same images:

* harness: ``ClassifierSteps`` batches through ``harness.train.loop.train_step``, run
  as a :class:`Runtime` says (by default fp32, channels_last).
* stock: a ``torch.utils.data.DataLoader`` over a ``Dataset`` of the same uint8 images
  in host memory, each image through ``torchvision.transforms.v2`` (the protocol's
  random crop after zero padding and horizontal flip, if it has them; scaling to
  0..1; per-channel normalisation where the data has a mean and std), batches
  shuffled, pinned and copied to the device, fp32, default memory format.

Both sides: the same variant with the same initial weights, the protocol's optimiser,
the same batch size. Timing, as ``bench`` times its ratios: rounds, each a block of
harness steps then a block of stock steps, every block after untimed warm-up steps and
synchronised; images/s per block; the ratio is the median of the per-round ratios, with
its IQR and ``bench``'s noisy flag; each side also gets the machine's state over its
blocks and :func:`harness.core.machine.verdict`'s reading (quiet or disturbed, and why),
as the harness's training records do. Apart from training, :func:`data_path` times the two
data paths alone (what one stock worker does against the harness's batch preparation). The
stock side's worker processes are started at the
start of its block and stopped at its end, so they neither steal CPU from the harness's
block nor prefetch batches during it (their start-up is in the untimed warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from harness.core import machine
from harness.core.errors import UserError
from harness.core.runtime import AMP_MODES, Runtime, resolve_device
from harness.data.classification import ClassificationData
from harness.store.records import atomic_write_text, check_writable_dir, environment
from harness.tables.paper import TABLE1, TABLES
from harness.tasks.classification.augment import InputPipeline
from harness.tasks.classification.engine import ClassifierSteps
from harness.tasks.classification.protocol import ClassificationProtocol
from harness.tools.bench import Estimate, timing_threads
from harness.train.loop import make_optimizer, train_step
from harness.train.measure import MachineWatch, synchronize
from registry import create_model


def default_workers(device: torch.device) -> int:
    """DataLoader workers for the stock loop: on a GPU machine up to 8 (the host only
    prepares batches); on a CPU half the cores, the rest left to the training itself."""
    cores = machine.cpu_budget()
    return min(8, cores) if device.type == "cuda" else max(1, cores // 2)


class ImageTensors(Dataset):
    """uint8 images (N, C, H, W) in host memory, one transformed image per item, as a
    torchvision dataset hands them out."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def stock_transform(
    protocol: ClassificationProtocol, data: ClassificationData
) -> Callable[[Tensor], Tensor]:
    """The per-image torchvision transforms with the harness's augmentation semantics."""
    from torchvision.transforms import v2  # seconds to import: only when measured

    steps: list[Callable[[Tensor], Tensor]] = []
    if protocol.crop_padding:
        steps.append(v2.RandomCrop(data.input_shape[1:], padding=protocol.crop_padding))
    if protocol.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if data.mean is not None and data.std is not None:
        steps.append(v2.Normalize(data.mean, data.std))
    return v2.Compose(steps)


Step = Callable[[], None]
PREFETCH = 2  # batches each DataLoader worker prepares ahead (torch's default)


def harness_step(
    variant: str, data: ClassificationData, protocol: ClassificationProtocol,
    device: torch.device, runtime: Runtime,
) -> Step:  # fmt: skip
    """One optimiser step of the harness's path per call; ``data`` is on ``device``."""
    torch.manual_seed(0)
    model = create_model(variant).to(device).train()
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if runtime.compile else model
    optimizer = make_optimizer(model, protocol)
    inputs = InputPipeline(data, protocol, channels_last=runtime.channels_last)
    autocast = runtime.autocast(device)
    steps = ClassifierSteps(model, net, data, protocol, inputs, 0, autocast)
    batches = itertools.chain.from_iterable(steps.epoch(e) for e in itertools.count())

    def step() -> None:
        train_step(net, optimizer, steps, next(batches), autocast)

    return step


class StockLoop:
    """The stock loop: a DataLoader over :class:`ImageTensors`, a plain fp32 step.

    :meth:`running` starts an iterator (and its workers) and stops it again, so the
    workers only run while this side is being timed."""

    def __init__(
        self, variant: str, data: ClassificationData, protocol: ClassificationProtocol,
        device: torch.device, workers: int,
    ) -> None:  # fmt: skip
        torch.manual_seed(0)
        self.model = create_model(variant).to(device).train()
        self.optimizer = make_optimizer(self.model, protocol)
        self.device = device
        dataset = ImageTensors(data.train_x, data.train_y, stock_transform(protocol, data))
        self.loader = DataLoader(
            dataset, batch_size=protocol.batch_size, shuffle=True, num_workers=workers,
            pin_memory=device.type == "cuda", drop_last=True,
            prefetch_factor=PREFETCH if workers else None,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        self._batches: Iterator[tuple[Tensor, Tensor]] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Step]:
        """A step function, its loader's workers running until the block ends."""
        self._batches = iter(self.loader)
        try:
            yield self.step
        finally:
            self._batches = None  # the iterator's workers shut down with it

    def _next(self) -> tuple[Tensor, Tensor]:
        try:
            return next(self._batches)
        except StopIteration:  # the next epoch, as a training script's outer loop
            self._batches = iter(self.loader)
            return next(self._batches)

    def step(self) -> None:
        x, y = self._next()
        x = x.to(self.device, non_blocking=True)
        loss = F.cross_entropy(self.model(x), y.to(self.device, non_blocking=True))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


@dataclass(frozen=True)
class Plan:
    """How long to time: ``rounds`` of ``steps`` timed steps per side, each block after
    ``warmup`` untimed ones, and on the stock side also after as many as its workers
    prefetch: what they prepared while the first batch was awaited would otherwise be
    consumed inside the timed steps, without the wait a steady state has."""

    rounds: int = 3
    steps: int = 5
    warmup: int = 2

    def stock_warmup(self, workers: int) -> int:
        return self.warmup + PREFETCH * workers

    def images(self, batch_size: int, workers: int) -> int:
        """Images enough for a stock block without starting a new epoch (and workers)."""
        return batch_size * (self.stock_warmup(workers) + self.steps)


def timed_block(step: Step, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds of ``steps`` synchronised calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    begin = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - begin


def _estimate(estimate: Estimate, name: str) -> dict[str, Any]:
    """An estimate as record fields, with IQR/median and bench's noisy flag."""
    return {name: estimate.median, f"{name}_iqr": estimate.iqr,
            "iqr_over_median": estimate.spread, "noisy": estimate.noisy}  # fmt: skip


def compare(
    variant: str, data: ClassificationData, protocol: ClassificationProtocol,
    device: torch.device, *, plan: Plan = Plan(), runtime: Runtime = Runtime(),
    workers: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Images/s of each side and the harness's over the stock loop's (see module doc).

    ``data`` is in host memory; its first ``plan.images(batch, workers)`` training images
    are used.
    """
    workers = default_workers(device) if workers is None else workers
    data = data.limited(plan.images(protocol.batch_size, workers), None)
    harness = harness_step(variant, data.to(device), protocol, device, runtime)
    stock = StockLoop(variant, data, protocol, device, workers)
    images = protocol.batch_size * plan.steps
    seconds: dict[str, list[float]] = {"harness": [], "stock": []}
    states: dict[str, list[dict[str, Any]]] = {"harness": [], "stock": []}
    for _ in range(plan.rounds):
        with MachineWatch(device) as watch:
            seconds["harness"].append(timed_block(harness, plan.warmup, plan.steps, device))
        states["harness"].append(watch.state)
        with MachineWatch(device) as watch, stock.running() as step:
            warmup = plan.stock_warmup(workers)
            seconds["stock"].append(timed_block(step, warmup, plan.steps, device))
        states["stock"].append(watch.state)
    rates = {name: [images / s for s in times] for name, times in seconds.items()}
    ratio = Estimate.of([h / s for h, s in zip(rates["harness"], rates["stock"], strict=True)])

    def side(name: str, execution: str, processes: int) -> dict[str, Any]:
        """A side's images/s, and the machine's state over its blocks (one per round,
        warm-up included) with :func:`machine.verdict`'s reading of it."""
        threads = torch.get_num_threads() + processes
        found = machine.verdict(seconds[name], states[name], machine.cpus(), threads)
        return {**_estimate(Estimate.of(rates[name]), "images_per_s"),
                "images_per_s_each_round": rates[name], "execution": execution,
                "machine": found.label, "machine_reasons": list(found.reasons),
                "states": states[name]}  # fmt: skip

    return {
        "variant": variant, "device": device.type, "batch_size": protocol.batch_size,
        "rounds": plan.rounds, "steps_per_round": plan.steps, "warmup_steps": plan.warmup,
        "stock_warmup_steps": plan.stock_warmup(workers),
        "harness": side(
            "harness", f"{runtime.label}, device-resident uint8, batch augmentation", 0
        ),
        "stock": side("stock", f"fp32, DataLoader(num_workers={workers}), transforms.v2", workers),
        "workers": workers, "ratio": _estimate(ratio, "ratio"),
    }  # fmt: skip


def _machine(result: dict[str, Any], name: str) -> str:
    """A side's machine verdict, with its reasons."""
    reasons = "; ".join(result[name]["machine_reasons"])
    return f"{name} {result[name]['machine']}" + (f" ({reasons})" if reasons else "")


def summary(result: dict[str, Any]) -> str:
    """One line: each side's images/s and the ratio, with its spread and noisy flag, and
    whether the machine was quiet while each side ran."""
    ratio = result["ratio"]
    machines = ", ".join(_machine(result, name) for name in ("harness", "stock"))
    return (
        f"{result['variant']} batch {result['batch_size']}: harness "
        f"{result['harness']['images_per_s']:.0f} images/s, stock DataLoader loop "
        f"{result['stock']['images_per_s']:.0f} images/s ({result['workers']} workers): "
        f"{ratio['ratio']:.2f}x (IQR/median {ratio['iqr_over_median']:.2f}"
        f"{', noisy' if ratio['noisy'] else ''}; {result['rounds']} interleaved rounds); "
        f"machine: {machines}"
    )


def random_digits(n: int) -> ClassificationData:
    """``n`` random uint8 digits of MNIST's shape (pixel content does not change the cost)."""
    gen = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return ClassificationData(digits, labels, digits[:1], labels[:1], "random digits")


def cifar_layout_images(n: int) -> ClassificationData:
    """``n`` generated colour images written in CIFAR-10's on-disk layout and read back
    through torchvision's CIFAR10 reader, with CIFAR-10's mean and std."""
    from harness.data import cifar  # imports torchvision

    with tempfile.TemporaryDirectory(prefix="harness-throughput-") as tmp:
        arrays, folder = cifar.load_fixture(Path(tmp), n, 1)
    return ClassificationData(*arrays, f"generated, read as {folder.name}", cifar.MEAN, cifar.STD)


@dataclass(frozen=True)
class Workload:
    """A model, its table's paper protocol, images of its data set's shape."""

    variant: str
    protocol: ClassificationProtocol
    data: Callable[[int], ClassificationData]
    epoch_images: int  # training images in one epoch of the real data set


WORKLOADS = {
    "table1": Workload("mnist.fp_max_s2", TABLE1.protocol("paper"), random_digits, 60_000),
    "vgg16": Workload(
        "vgg16.baseline", TABLES["table2"].protocol("paper"), cifar_layout_images, 50_000
    ),
}
# batch size and plan of --quick (CI: seconds on a CPU)
QUICK_BATCH, QUICK_PLAN = 10, Plan(rounds=3, steps=2, warmup=1)


def measure(
    name: str, device: torch.device, *, quick: bool = False, plan: Plan | None = None,
    batch_size: int | None = None, runtime: Runtime = Runtime(), workers: int | None = None,
    variant: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """:func:`compare` on a named workload, with the environment and an epoch's time."""
    work = WORKLOADS[name]
    plan = plan or (QUICK_PLAN if quick else Plan())
    batch = batch_size or (QUICK_BATCH if quick else work.protocol.batch_size)
    protocol = replace(work.protocol, batch_size=batch)
    variant = variant or work.variant
    workers = default_workers(device) if workers is None else workers
    data = work.data(plan.images(batch, workers))
    before = os.getloadavg()
    with timing_threads(device, quick):  # quick on a CPU: one thread, as bench --quick
        threads = torch.get_num_threads()
        result = compare(
            variant, data, protocol, device, plan=plan, runtime=runtime, workers=workers
        )
        result["data_path"] = data_path(name, device, batch)
    for side in ("harness", "stock"):
        result[side]["epoch_s"] = work.epoch_images / result[side]["images_per_s"]
    return {"what": f"{name}: images/s of the harness's training path and of a stock "
            "DataLoader loop, same model, optimiser, batch and augmentation",
            "workload": name, "quick": quick, "threads": threads, "data": data.description,
            **result,
            "epoch_images": work.epoch_images, "env": environment(device),
            "load_average": {"before": before, "after": os.getloadavg(), "cpus": os.cpu_count()},
            "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


DATA_PATH_IMAGES = 2000  # per pass of the data paths alone: ~0.1 s on a CPU for the stock side


def data_path(name: str, device: torch.device, batch_size: int, rounds: int = 5) -> dict[str, Any]:
    """Images/s of each side's data path alone, one epoch over the same images per side
    and round, in turns: the harness's batches (``ClassifierSteps.epoch``: index, crop,
    flip, normalise on ``device``, synchronised) and the stock ``Dataset`` through a
    DataLoader without workers (what one worker does: transforms and collation) plus
    the copy to ``device``; with the ratio, as :func:`compare` gives it."""
    work = WORKLOADS[name]
    protocol = replace(work.protocol, batch_size=batch_size)
    data = work.data(DATA_PATH_IMAGES)
    on_device = data.to(device)
    inputs = InputPipeline(on_device, protocol)
    steps = ClassifierSteps(nn.Identity(), nn.Identity(), on_device, protocol, inputs, 0,
                            contextlib.nullcontext())  # fmt: skip
    dataset = ImageTensors(data.train_x, data.train_y, stock_transform(protocol, data))
    loader = DataLoader(dataset, batch_size=protocol.batch_size, shuffle=True, drop_last=True)

    def harness() -> None:
        for _ in steps.epoch(0):
            pass

    def stock() -> None:
        for x, _ in loader:
            x.to(device, non_blocking=True)

    images = len(loader) * protocol.batch_size
    # warm-up (first calls, allocations), then as many harness passes per block as make it
    # last about one stock pass: a pass of a fraction of a millisecond is too short to time
    first = [timed_block(run, 0, 1, device) for run in (harness, stock)]
    passes = {"harness": max(1, round(first[1] / first[0])), "stock": 1}
    rates: dict[str, list[float]] = {"harness": [], "stock": []}
    for _ in range(rounds):
        for side, run in (("harness", harness), ("stock", stock)):
            seconds = timed_block(run, 0, passes[side], device)
            rates[side].append(passes[side] * images / seconds)
    ratio = Estimate.of([h / s for h, s in zip(rates["harness"], rates["stock"], strict=True)])
    return {"workload": name, "device": device.type, "batch_size": protocol.batch_size,
            "images_per_round": images, "rounds": rounds,
            **{side: _estimate(Estimate.of(r), "images_per_s") for side, r in rates.items()},
            "ratio": _estimate(ratio, "ratio")}  # fmt: skip


def data_summary(result: dict[str, Any]) -> str:
    """One line: the two data paths' images/s and their ratio."""
    ratio = result["ratio"]
    return (
        f"data path alone ({result['workload']}, batch {result['batch_size']}): harness "
        f"{result['harness']['images_per_s']:.0f} images/s, one stock worker "
        f"{result['stock']['images_per_s']:.0f} images/s: {ratio['ratio']:.1f}x (IQR/median "
        f"{ratio['iqr_over_median']:.2f}{', noisy' if ratio['noisy'] else ''})"
    )


def parse(argv: list[str] | None, workload: str | None = None) -> argparse.Namespace:
    """Arguments; ``workload`` fixes the workload (a script for one of them)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if workload is None:
        p.add_argument("--workload", choices=WORKLOADS, default="table1")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--quick", action="store_true",
                   help=f"batch {QUICK_BATCH}, {QUICK_PLAN.rounds} rounds of {QUICK_PLAN.steps} "
                   "steps: seconds, indicative only")  # fmt: skip
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, help="timed steps per side and round (default 5)")
    p.add_argument("--warmup", type=int, help="untimed steps before each block (default 2)")
    p.add_argument("--batch-size", type=int, help="default: the table's paper protocol's")
    p.add_argument("--workers", type=int, help="the stock loop's DataLoader workers "
                   "(default: up to 8 with a GPU, half the cores without)")  # fmt: skip
    p.add_argument("--amp", choices=AMP_MODES, default="off", help="harness side only")
    p.add_argument("--compile", action="store_true", help="harness side only")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="harness side in the default layout, as the stock side: only the data "
                   "path differs")  # fmt: skip
    p.add_argument(
        "--out", type=Path, help="the JSON (default reports/bench/throughput-WORKLOAD.json)"
    )
    args = p.parse_args(argv)
    args.workload = workload or args.workload
    numbers = [v for v in (args.rounds, args.steps, args.batch_size) if v is not None]
    if min(numbers, default=1) < 1 or min(args.warmup or 0, args.workers or 0) < 0:
        p.error(
            "--rounds, --steps and --batch-size must be 1 or more, --warmup and --workers 0 or more"
        )
    return args


def _plan(args: argparse.Namespace) -> Plan:
    base = QUICK_PLAN if args.quick else Plan()
    chosen = {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup}
    return replace(base, **{k: v for k, v in chosen.items() if v is not None})


def main(argv: list[str] | None = None, workload: str | None = None) -> int:
    """Measure, print one line, write the JSON; 2 with one line if the device is missing."""
    args = parse(argv, workload)
    out = args.out or Path("reports") / "bench" / f"throughput-{args.workload}.json"
    try:
        device = resolve_device(args.device)
        check_writable_dir(out.parent, "--out")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    runtime = Runtime(amp=args.amp, compile=args.compile, channels_last=args.channels_last)
    result = measure(
        args.workload, device, quick=args.quick, plan=_plan(args), batch_size=args.batch_size,
        runtime=runtime, workers=args.workers,
    )  # fmt: skip
    print(summary(result))
    print(data_summary(result["data_path"]))
    harness, stock = result["harness"], result["stock"]
    print(f"epoch ({result['epoch_images']} images): harness {harness['epoch_s']:.1f} s, "
          f"stock {stock['epoch_s']:.1f} s [{harness['execution']}]")  # fmt: skip
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
