"""Child processes die with their parent, from their first instruction.

A worker or torchrun rank that outlives its parent holds memory and cores for nobody
(and a rank may keep writing). Linux's parent-death signal ends a child the moment its
parent dies, even by SIGKILL, but only once armed, and arming races the parent's death;
so it is armed first thing, before torch is imported, and the parent's pid is checked
right after. This module imports nothing heavy so that it can run first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 1.0


def arm(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies; exit now if it already
    has (the parent is no longer ``parent``: this process was handed to a reaper)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def watch(parent: int, interval_s: float = _POLL_S) -> None:
    """Also poll: exit as soon as the parent is gone (where no death signal exists, and
    for the cases it misses, such as the parent's spawning thread ending first)."""

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=poll, name="lifeline", daemon=True).start()


def worker_start(parent: int) -> None:
    """Initializer of the denoising WorkerPool's processes: armed before the heavy imports.

    One thread per worker: N workers share the cores, and BLAS threads on top of them
    (OpenBLAS spins while waiting) would slow every image down many times over.
    """
    arm(parent)
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import torch  # after arming, on purpose
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


def guard_rank() -> None:
    """A torchrun rank (its environment has TORCHELASTIC_RUN_ID) dies with its agent.

    torchrun does not pass the agent's pid, so the parent seen at this first step is taken
    for it, unless it is init (pid 1) and init is no torch launcher: then the agent died
    while this interpreter was starting. (Where orphans go to a subreaper instead of init,
    that short window goes unseen.)
    """
    if "TORCHELASTIC_RUN_ID" in os.environ:
        parent = os.getppid()
        if parent == 1 and not _is_torch_launcher(1):
            os._exit(1)
        arm(parent)
        watch(parent)


def _is_torch_launcher(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"torch" in handle.read()
    except OSError:
        return True  # cannot tell: keep running
