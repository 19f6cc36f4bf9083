"""One training epoch of the baseline VGG-16 at batch 250: our fast path vs a plain loop.

Both sides train ``vgg16.baseline`` with the paper's optimiser (SGD, momentum 0.9,
lr 0.1, weight decay 5e-4) on the same CIFAR-10-shaped images, one after the other
in one process on one device:

* fast: the harness's training path (``ClassifierSteps`` and ``harness.train.loop.train_step``): uint8 images
  resident on the device, random crop and flip on the device per batch, per-channel
  normalisation, channels_last, optionally bf16 autocast and torch.compile.
* plain: torchvision's CIFAR10 dataset class (over the same images written in its
  pickle layout) with CPU transforms (RandomCrop(32, 4), RandomHorizontalFlip,
  ToTensor, Normalize) behind a DataLoader, fp32, default memory format.

An epoch is 200 steps (50,000 / 250). ``--steps N`` times N steps after the warm-up
steps and extrapolates to 200; the output says so. ``--repeats R`` alternates the two
sides R times and keeps the median of each (steadier on a shared machine). Pixel
content does not change the cost, so the images are random. Writes
``reports/bench/vgg_epoch.json``.

    python benchmarks/vgg_epoch.py --device cpu --steps 3 --repeats 3
    python benchmarks/vgg_epoch.py --device cuda --amp bf16 --compile
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision import transforms

from harness.core.errors import UserError
from harness.core.runtime import AMP_MODES, Runtime, resolve_device
from harness.data.cifar import MEAN, STD, UnverifiedCIFAR10, write_cifar10_python
from harness.data.classification import ClassificationData
from harness.store.records import environment
from harness.tables.paper import TABLES
from harness.tasks.classification.augment import InputPipeline
from harness.tasks.classification.engine import ClassifierSteps
from harness.train.loop import make_optimizer, train_step
from harness.train.measure import synchronize
from registry import create_model

EPOCH_IMAGES = 50_000
PROTOCOL = TABLES["table2"].protocol("paper")


def timed(step: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for i in range(warmup):
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    synchronize(device)
    return time.perf_counter() - start


def fast_path(
    data: ClassificationData, runtime: Runtime, device: torch.device, args: argparse.Namespace
) -> float:
    model = create_model("vgg16.baseline").to(device).train()
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if runtime.compile else model
    optimizer = make_optimizer(model, PROTOCOL)
    inputs = InputPipeline(data, PROTOCOL, channels_last=runtime.channels_last)
    autocast = runtime.autocast(device)
    protocol = replace(PROTOCOL, batch_size=args.batch_size)
    steps = ClassifierSteps(model, net, data, protocol, inputs, 0, autocast)
    batches = itertools.chain.from_iterable(steps.epoch(e) for e in itertools.count())

    def step(_: int) -> None:
        train_step(net, optimizer, steps, next(batches), autocast)

    return timed(step, args.warmup, args.steps, device)


def plain_loop(folder: Path, device: torch.device, args: argparse.Namespace) -> float:
    model = create_model("vgg16.baseline").to(device).train()
    optimizer = make_optimizer(model, PROTOCOL)
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD),
    ])  # fmt: skip
    dataset = UnverifiedCIFAR10(str(folder), train=True, transform=transform)
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        pin_memory=device.type == "cuda", drop_last=True,
    )  # fmt: skip
    batches = iter(loader)

    def step(_: int) -> None:
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, args.warmup, args.steps, device)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--steps", type=int, default=EPOCH_IMAGES // 250, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (each side)")
    p.add_argument("--repeats", type=int, default=1, help="alternate the sides this often")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--amp", choices=AMP_MODES, default="off", help="fast path only")
    p.add_argument("--compile", action="store_true", help="fast path only")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader workers of the plain loop")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("reports/bench/vgg_epoch.json"))
    args = p.parse_args(argv)
    if min(args.steps, args.batch_size, args.repeats) < 1 or args.warmup < 0:
        p.error("--steps, --batch-size and --repeats must be 1 or more, --warmup 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        device = resolve_device(args.device)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    runtime = Runtime(amp=args.amp, compile=args.compile)
    steps_per_epoch = EPOCH_IMAGES // args.batch_size
    n = min(EPOCH_IMAGES, (args.warmup + args.steps) * args.batch_size)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    data = ClassificationData(images, labels, images[:1], labels[:1], "random", MEAN, STD)
    on_device = data.to(device)
    plain_s, fast_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10_python(Path(tmp), images, labels, images[:1], labels[:1])
        for _ in range(args.repeats):
            plain_s.append(plain_loop(Path(tmp), device, args) / args.steps)
            fast_s.append(fast_path(on_device, runtime, device, args) / args.steps)

    def side(per_step: list[float], **extra: object) -> dict[str, object]:
        median = statistics.median(per_step)
        return {"s_per_step": median, "epoch_s": median * steps_per_epoch,
                "s_per_step_each_repeat": per_step, **extra}  # fmt: skip

    result = {
        "what": "one training epoch of vgg16.baseline, batch 250, SGD; fast path vs plain loop",
        "device": environment(device)["device_name"],
        "env": environment(device),
        "steps_per_epoch": steps_per_epoch,
        "steps_timed": args.steps,
        "warmup_steps": args.warmup,
        "epoch_extrapolated": args.steps < steps_per_epoch,
        "fast": side(fast_s, execution=runtime.label),
        "plain": side(plain_s, execution="fp32, DataLoader", workers=args.workers),
        "repeats": args.repeats,
        "speedup": statistics.median(plain_s) / statistics.median(fast_s),
        "goal": "H100-class GPU: epoch <= 2 s with bf16, fast path >= 3x the plain loop",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    how = f"extrapolated from {args.steps} steps" if result["epoch_extrapolated"] else "measured"
    for name in ("fast", "plain"):
        r = result[name]
        print(f"{name:>5}: {r['s_per_step']:.3f} s/step, epoch {r['epoch_s']:.1f} s ({how}) "
              f"[{r['execution']}]")  # fmt: skip
    print(f"speedup (plain / fast): {result['speedup']:.2f}x on {result['device']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
