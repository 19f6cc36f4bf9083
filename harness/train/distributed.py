"""Several processes through torch.distributed, detected from torchrun's environment.

``torchrun --nproc-per-node N -m harness run ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them everything runs as a single process (rank 0 of 1) and no
process group is made. NCCL is used on GPUs and Gloo on CPUs. Only rank 0 writes
records, checkpoints and reports; metrics are summed across ranks.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.core.errors import UserError
from harness.core.lazy import lazy

if TYPE_CHECKING:
    import torch
    import torch.distributed as dist
else:  # commands that only read records never import torch (issue 29)
    torch, dist = lazy("torch"), lazy("torch.distributed")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from torchrun's variables (a single process without them)."""
    try:
        rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise UserError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)"
        ) from None
    return World(rank, size, local)


def is_main() -> bool:
    return world().is_main


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group once (if launched by torchrun); the device this rank uses."""
    here = world()
    if not here.distributed:
        return here, device
    if device.type == "cuda":
        device = torch.device("cuda", here.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return here, device


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over every rank (unchanged in a single process)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
