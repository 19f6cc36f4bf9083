"""Image-folder classification (ImageNet): DataLoaders, DDP, per-epoch checkpoints.

ImageNet does not fit the GPU-resident uint8 design of ``train.py``, so these tables
read JPEGs through ``torchvision.datasets.ImageFolder`` and a ``DataLoader`` (worker
processes decode and augment, pinned memory feeds the GPU). The same loop runs as one
process or as several under ``torchrun`` (``harness.train.distributed``): the model is wrapped
in DistributedDataParallel, a DistributedSampler splits each epoch's shuffled order
between ranks, each rank tests a disjoint shard of the validation images and the
correct counts are summed. Only rank 0 writes checkpoints and weights. Epoch times
include data loading (unlike the GPU-resident tables), measured on rank 0.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from harness.core.protocol import Protocol
from harness.core.runtime import Runtime, diverged
from harness.data.imagenet import TOP_K, FolderData
from harness.store.records import RunStore
from harness.train import distributed
from harness.train.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from harness.train.loop import TrainResult, lr_for_epoch, make_optimizer
from harness.train.measure import Stopwatch, median_time


def _loader(data: Dataset, batch: int, device: torch.device, workers: int, **kw: Any) -> DataLoader:
    return DataLoader(
        data, batch_size=batch, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=False, **kw,
    )  # fmt: skip


def _to(x: Tensor, device: torch.device, runtime: Runtime) -> Tensor:
    fmt = torch.channels_last if runtime.channels_last else torch.preserve_format
    return x.to(device, non_blocking=True, memory_format=fmt)


@torch.no_grad()
def evaluate_topk(
    model: nn.Module, loader: DataLoader, k: int, device: torch.device, runtime: Runtime
) -> Tensor:
    """(top-1 correct, top-k correct, images) of this rank's shard, summed over ranks."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64, device=device)
    for x, y in loader:
        y = y.to(device, non_blocking=True)
        with runtime.autocast(device):
            top = model(_to(x, device, runtime)).topk(k, dim=1).indices
        hits = top == y[:, None]
        counts += torch.stack(
            [hits[:, 0].sum(), hits.any(1).sum(), torch.tensor(len(y), device=device)]
        )
    model.train(was_training)
    return distributed.all_sum(counts).cpu()


def _epoch(
    net: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, n: int,
    device: torch.device, runtime: Runtime, bar: tqdm,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One epoch of this rank's share: (loss sum, batches) and how often each sample was seen."""
    seen = torch.zeros(n, dtype=torch.int32)
    total = torch.zeros(2, device=device)
    for x, y, idx in loader:
        with runtime.autocast(device):
            loss = F.cross_entropy(net(_to(x, device, runtime)), y.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += torch.stack([loss.detach().float(), torch.ones((), device=device)])
        seen[idx] += 1
        bar.update()
    return total, seen


def _epoch_record(
    epoch: int, lr: float, total: Tensor, seen: Tensor, here: distributed.World,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """History entry: mean loss over all ranks and how the epoch was split between them."""
    per_rank = torch.zeros(here.size, dtype=torch.int64, device=device)
    per_rank[here.rank] = int(seen.sum())
    seen_all = distributed.all_sum(seen.to(device)).cpu()
    loss_sum, batches = distributed.all_sum(total).tolist()
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": loss_sum / max(batches, 1),
        "rank_samples": distributed.all_sum(per_rank).tolist(),
        "samples_seen_twice": int((seen_all > 1).sum()),
        "samples_unseen": int((seen_all == 0).sum()),
    }


def run_folder_cell(
    model: nn.Module, data: FolderData, protocol: Protocol, config: dict[str, Any], *,
    store: RunStore, device: torch.device, desc: str, runtime: Runtime, save_weights: bool,
) -> tuple[TrainResult, Path | None]:  # fmt: skip
    """Train and test one cell, resuming from its checkpoint; weights saved on rank 0."""
    here = distributed.world()
    checkpoint = store.path(config).with_suffix(".ckpt")
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    model.to(device)
    ddp = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if here.distributed
        else model
    )
    net = torch.compile(ddp) if runtime.compile else ddp
    optimizer = make_optimizer(model, protocol)
    sampler = DistributedSampler(
        data.train, num_replicas=here.size, rank=here.rank, seed=config["seed"]
    )
    train = _loader(data.train, protocol.batch_size, device, data.workers, sampler=sampler)
    shard = Subset(data.test, range(here.rank, len(data.test), here.size))
    test = _loader(shard, protocol.test_batch_size, device, data.workers)
    result, start = TrainResult(), 0
    state = load_checkpoint(checkpoint, model, optimizer)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"])
        start, result.history, result.epoch_times_s = (
            state["epoch"],
            state["history"],
            state["epoch_times_s"],
        )
        if here.is_main:  # in a requeued batch job's log: it resumed, not restarted
            tqdm.write(f"{desc}: resuming after epoch {start} from {checkpoint}")
    bar = tqdm(total=(protocol.epochs - start) * len(train), desc=desc, leave=False, unit="step",
               disable=None if here.is_main else True)  # fmt: skip
    model.train()
    for epoch in range(start, protocol.epochs):
        lr = lr_for_epoch(protocol, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sampler.set_epoch(epoch)
        # DataLoader augmentation draws from the global RNG (worker seeds too), which building
        # the model advanced by an amount that depends on the row: reseed so that seed s gives
        # every row the same draws (paired comparisons), and a resumed run the same as before
        torch.manual_seed(config["seed"] * 100_003 + epoch)
        with Stopwatch(device) as watch:
            total, seen = _epoch(net, optimizer, train, len(data.train), device, runtime, bar)
        result.history.append(_epoch_record(epoch, lr, total, seen, here, device))
        result.epoch_times_s.append(watch.elapsed)
        result.diverged = diverged(result.history[-1]["train_loss"])
        if here.is_main:
            save_checkpoint(checkpoint, epoch=epoch + 1, model=model, optimizer=optimizer,
                            history=result.history, epoch_times_s=result.epoch_times_s)  # fmt: skip
        distributed.barrier()
        if result.diverged:
            break
    bar.close()
    k = min(TOP_K, data.classes)
    counts: list[Tensor] = []
    test_time, result.test_times_s = median_time(
        lambda: counts.append(evaluate_topk(model, test, k, device, runtime)), device,
        repeats=protocol.test_repeats, warmup=0,
    )  # fmt: skip
    top1, topk, images = counts[-1].tolist()
    result.metrics = {
        "top1": top1 / images,
        "top5": topk / images,
        "train_time_s": statistics.median(result.epoch_times_s),
        "test_time_s": test_time,
    }
    weights = None
    if here.is_main:
        if save_weights:
            weights = store.save_weights(config, model.state_dict())
        checkpoint.unlink(missing_ok=True)  # the record follows; its weights are the .pt
    return result, weights
