"""One all_reduce through torch.distributed, for ``doctor`` to run under torchrun.

``python -m torch.distributed.run --nproc-per-node N -m harness.train.collective_probe cuda``
joins a process group (NCCL on ``cuda``, Gloo on ``cpu``), sums each rank's number
and prints one JSON line: the backend, the world size and whether the sum is right.
The harness itself only makes a process group for two or more processes; this makes
one for any number, so one GPU is enough to check that NCCL works.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist


def main(device_type: str) -> int:
    backend = "nccl" if device_type == "cuda" else "gloo"
    device = torch.device(device_type)
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        rank, size = dist.get_rank(), dist.get_world_size()
        value = torch.full((4,), float(rank + 1), device=device)
        dist.all_reduce(value)
        ok = bool((value == size * (size + 1) / 2).all())
        if rank == 0:
            print(json.dumps({"backend": backend, "world_size": size, "ok": ok}), flush=True)
    finally:
        dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cpu"))
