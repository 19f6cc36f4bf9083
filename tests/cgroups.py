"""A real cgroup with a CPU quota, for the tests that check what the harness does under one
(a container's ``--cpus``, a pod's limit): root makes a child of a hierarchy with the CPU
controller, v1 first, and removes it after."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def _hierarchy() -> tuple[Path, bool] | None:
    """(a CPU-controller hierarchy root may make children in, whether it is v2), or None."""
    if os.geteuid() != 0:
        return None
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").is_file() and os.access(v1, os.W_OK):
        return v1, False
    for v2 in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        control = v2 / "cgroup.subtree_control"
        if control.is_file() and "cpu" in (v2 / "cgroup.controllers").read_text().split():
            with contextlib.suppress(OSError):
                control.write_text("+cpu")
                return v2, True
    return None


HIERARCHY = _hierarchy()
needs_cgroup = pytest.mark.skipif(
    HIERARCHY is None, reason="needs root and a cgroup CPU controller"
)


@contextlib.contextmanager
def quota_cgroup(cpus: float) -> Iterator[Path]:
    """A new cgroup whose quota is ``cpus`` CPUs per 100 ms period; yields its
    ``cgroup.procs``, which a process writes its pid to to join it."""
    assert HIERARCHY is not None
    hierarchy, v2 = HIERARCHY
    group = hierarchy / f"harness-test-{os.getpid()}"
    group.mkdir()
    try:
        quota = str(int(cpus * 100_000))
        if v2:
            (group / "cpu.max").write_text(f"{quota} 100000")
        else:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text(quota)
        yield group / "cgroup.procs"
    finally:
        group.rmdir()
