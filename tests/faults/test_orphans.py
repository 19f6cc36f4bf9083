"""kill -9 of a parent leaves no child alive: workers during start-up and mid-work, and
torchrun ranks when their agent dies. Every check and every cleanup is by pid."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.faults.helpers import ROOT, alive, children, kill_all, wait_gone

POOL = """
import sys
from harness.tasks.denoising.engine import WorkerPool
from tests.faults.work import busy
with WorkerPool(2) as pool:
    list(pool.map_unordered(busy, [f"{sys.argv[1]}/{i}" for i in range(4)]))
"""


def _parent(tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", POOL, str(tmp_path)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip


def _workers(parent: subprocess.Popen, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(parent.pid)
        if len(kids) >= count:
            return kids
        time.sleep(0.01)
    raise AssertionError(f"no {count} children of {parent.pid} after {timeout} s")


def _kill_parent_and_check(parent: subprocess.Popen, kids: list[int]) -> None:
    kids = sorted({*kids, *children(parent.pid)})
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert wait_gone(kids, timeout=10) == [], "children outlived their parent"
    finally:
        kill_all(kids)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, random.Random(16).uniform(0.05, 1.5)])
def test_workers_die_when_parent_is_killed_during_start_up(tmp_path, delay):
    parent = _parent(tmp_path)
    kids = _workers(parent, 3)  # resource tracker + 2 workers, still starting up
    time.sleep(delay)
    assert not list(tmp_path.iterdir()), "the workers should still be starting"
    _kill_parent_and_check(parent, kids)


@pytest.mark.slow
def test_workers_die_when_parent_is_killed_mid_work(tmp_path):
    parent = _parent(tmp_path)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.iterdir())) == 2, "the workers never started their work"
    kids = _workers(parent, 2)
    assert all(alive(k) for k in kids)
    _kill_parent_and_check(parent, kids)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["start-up", "mid-run"])
def test_torchrun_ranks_die_with_their_agent(tmp_path, when):
    agent = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(29500 + os.getpid() % 1000), "-m", "harness", "run", "imagenet",
         "--profile", "smoke", "--device", "cpu", "--data-root", str(tmp_path / "data"),
         "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "reports")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    ranks = _workers(agent, 2, timeout=120)
    deadline = time.monotonic() + 300
    while when == "mid-run" and time.monotonic() < deadline:  # a cell claimed: ranks at work
        if list((tmp_path / "runs").glob("imagenet/smoke/*.lease")):
            break
        time.sleep(0.05)
    assert all(alive(r) for r in ranks), "a rank ended before the agent was killed"
    _kill_parent_and_check(agent, ranks)
