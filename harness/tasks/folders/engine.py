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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from harness.core.protocol import Protocol
from harness.core.runtime import Runtime
from harness.data.imagenet import TOP_K, FolderData
from harness.store.records import RunStore
from harness.train import distributed
from harness.train.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from harness.train.loop import Steps, TrainResult, fit, make_optimizer
from harness.train.measure import MachineWatch, median_time


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


class FolderSteps(Steps):
    """This rank's share of each epoch from a DataLoader (worker processes decode and
    augment); one evaluation point per epoch, whose entry sums the loss over ranks and
    says how the epoch was split between them."""

    eval_points = 1

    def __init__(
        self, data: FolderData, loader: DataLoader, sampler: DistributedSampler, seed: int,
        device: torch.device, runtime: Runtime,
    ) -> None:  # fmt: skip
        self.loader, self.sampler, self.seed = loader, sampler, seed
        self.device, self.runtime = device, runtime
        self.steps_per_epoch = len(loader)
        self.seen = torch.zeros(len(data.train), dtype=torch.int32)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        self.sampler.set_epoch(epoch)
        # DataLoader augmentation draws from the global RNG (worker seeds too), which building
        # the model advanced by an amount that depends on the row: reseed so that seed s gives
        # every row the same draws (paired comparisons), and a resumed run the same as before
        torch.manual_seed(self.seed * 100_003 + epoch)
        self.seen.zero_()
        return self._batches()

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y, idx in self.loader:
            self.seen[idx] += 1
            yield _to(x, self.device, self.runtime), y.to(self.device, non_blocking=True)

    def loss(self, net: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(net(x), y)

    def summary(self, entry: dict[str, Any], losses: list[Tensor]) -> dict[str, Any]:
        here = distributed.world()
        loss_sum = torch.stack(losses).float().sum()
        total = torch.stack([loss_sum, loss_sum.new_tensor(float(len(losses)))])
        loss_sum, batches = distributed.all_sum(total).tolist()
        per_rank = torch.zeros(here.size, dtype=torch.int64, device=self.device)
        per_rank[here.rank] = int(self.seen.sum())
        seen_all = distributed.all_sum(self.seen.to(self.device)).cpu()
        return {
            **entry,
            "epoch": round(entry["epoch"]),
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
    steps = FolderSteps(data, train, sampler, config["seed"], device, runtime)
    result, start = _resume(checkpoint, model, optimizer)
    if start and here.is_main:  # in a requeued batch job's log: it resumed, not restarted
        tqdm.write(f"{desc}: resuming after epoch {start} from {checkpoint}")

    def after_epoch(epoch: int, result: TrainResult) -> None:
        if here.is_main:
            save_checkpoint(checkpoint, epoch=epoch + 1, model=model, optimizer=optimizer,
                            history=result.history, epoch_times_s=result.epoch_times_s,
                            epoch_machine=result.epoch_machine)  # fmt: skip
        distributed.barrier()

    fit(net, optimizer, steps, protocol, device=device, autocast=runtime.autocast(device),
        desc=desc, result=result, start=start, after_epoch=after_epoch, show=here.is_main)  # fmt: skip
    with MachineWatch(device) as seen:
        accuracy, test_time, result.test_times_s = _test(model, data, protocol, device, runtime)
    result.test_machine = seen.state
    result.metrics = {
        **accuracy,
        "train_time_s": statistics.median(result.epoch_times_s),
        "test_time_s": test_time,
    }
    weights = None
    if here.is_main:
        if save_weights:
            weights = store.save_weights(config, model.state_dict())
        checkpoint.unlink(missing_ok=True)  # the record follows; its weights are the .pt
    return result, weights


def _resume(
    checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[TrainResult, int]:
    """The result so far and the next epoch, from the cell's checkpoint when it has one."""
    result, state = TrainResult(), load_checkpoint(checkpoint, model, optimizer)
    if state is None:
        return result, 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"])
    result.history, result.epoch_times_s = state["history"], state["epoch_times_s"]
    result.epoch_machine = state.get("epoch_machine") or []  # older checkpoints have none
    return result, state["epoch"]


def _test(
    model: nn.Module, data: FolderData, protocol: Protocol, device: torch.device,
    runtime: Runtime,
) -> tuple[dict[str, float], float, list[float]]:  # fmt: skip
    """Top-1 and top-k accuracy over the validation images (each rank tests its shard),
    the median test time and the time of each pass."""
    here = distributed.world()
    shard = Subset(data.test, range(here.rank, len(data.test), here.size))
    test = _loader(shard, protocol.test_batch_size, device, data.workers)
    k = min(TOP_K, data.classes)
    counts: list[Tensor] = []
    test_time, times = median_time(
        lambda: counts.append(evaluate_topk(model, test, k, device, runtime)), device,
        repeats=protocol.test_repeats, warmup=0,
    )  # fmt: skip
    top1, topk, images = counts[-1].tolist()
    return {"top1": top1 / images, "top5": topk / images}, test_time, times
