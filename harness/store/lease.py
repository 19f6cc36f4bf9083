"""Claims on cells: an atomic lease file beside a cell's record, so that any number of
runners (shells, machines on a shared file system, Ray workers) never train a cell twice.

A lease is created with ``O_CREAT | O_EXCL``, which exactly one process wins, and names
its holder (host, pid, start time, device). A thread refreshes the file's modification
time every :data:`HEARTBEAT_S` seconds. A lease is stale, and may be taken over, when its
holder is a process of this host that no longer exists, or when its heartbeat is older
than :data:`STALE_AFTER_S` (a holder on another host that died or lost the file system).
Taking over renames the stale file to a unique name first, which again only one process
wins, so two runners never both take over the same cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0  # twelve missed heartbeats: the holder is gone
SUFFIX = ".lease"


def _holder(device: str) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def read_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lease at ``path`` (None if there is none or it cannot be read)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether the lease at ``path`` has lost its holder (see the module docstring)."""
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_S:
        return True
    holder = read_holder(path)
    if holder is None:  # being written this instant, or garbage that will age out
        return False
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        return not pid_alive(pid)
    return False


@dataclass
class Lease:
    """A held claim; release it (or use it as a context manager) when the cell is over."""

    path: Path
    holder: dict[str, Any]
    peak_sharing: int = 1  # most cells seen running at once on this host and device kind
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_heartbeat(self, runs_root: Path | None = None) -> None:
        """Refresh the lease in a daemon thread; also count the cells sharing this host."""

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                # a vanished file system: the lease goes stale, as it should
                with contextlib.suppress(OSError):
                    os.utime(self.path)
                if runs_root is not None:
                    self.peak_sharing = max(self.peak_sharing, sharing(runs_root, self.holder))

        if runs_root is not None:
            self.peak_sharing = max(self.peak_sharing, sharing(runs_root, self.holder))
        self._thread = threading.Thread(target=beat, name=f"lease {self.path.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = read_holder(self.path)
        if (
            holder is not None
            and holder.get("pid") == self.holder["pid"]
            and holder.get("host") == self.holder["host"]
        ):
            # a folder turned read-only keeps it: it names this process, so it goes
            # stale when this process ends
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def acquire(path: Path, device: str = "cpu") -> Lease | None:
    """Claim ``path`` (a ``.lease`` file), taking over a stale one; None if it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = _holder(device)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if not is_stale(path):
                return None
            grave = path.with_name(f"{path.name}.stale-{holder['host']}-{holder['pid']}")
            try:
                os.replace(path, grave)  # only one taker finds the file to move
            except FileNotFoundError:
                continue
            grave.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        return Lease(path, holder)
    return None


def live_leases(runs_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every lease under ``runs_root`` whose holder is still there, with its holder."""
    found = []
    for path in sorted(Path(runs_root).glob(f"*/*/*{SUFFIX}")):
        holder = read_holder(path)
        if holder is not None and not is_stale(path):
            found.append((path, holder))
    return found


def sharing(runs_root: Path, me: dict[str, Any]) -> int:
    """How many cells (this one included) run now on this host on the same kind of device
    (the same GPU when CUDA_VISIBLE_DEVICES tells them apart): what a timing shares."""
    count = 0
    for _, holder in live_leases(runs_root):
        if holder.get("host") != me["host"]:
            continue
        if me["device"].startswith("cuda"):
            count += holder.get("device", "").startswith("cuda") and holder.get("gpu") == me["gpu"]
        else:
            count += not holder.get("device", "").startswith("cuda")
    return max(count, 1)
