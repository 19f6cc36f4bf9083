"""Executors, leases and failures: cells run locally or on Ray, once each, whoever runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import harness.tasks.classification.engine
from harness.cli import main
from harness.run.executors import RayExecutor
from harness.run.runner import run_table
from harness.store import lease
from harness.store.records import RunStore
from harness.tables.paper import TABLE1

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"table1 \[smoke\]: (\d+) trained, (\d+) already done, (\d+) failed, (\d+) unavailable"
)
# three rows of Table 1 keep these tests short; every cell still trains for real
ROWS = ("mnist.baseline", "mnist.fp_max_s2", "mnist.topk_s4")
SMALL = replace(TABLE1, rows=ROWS)


def _harness(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
    )  # fmt: skip


def _records(runs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / "table1" / "smoke").glob("*.json"))]


def _run_small(store: RunStore, executor=None, **kwargs):
    return run_table(
        SMALL, profile="smoke", seeds=1, device="cpu", store=store, data_root=store.root.parent,
        executor=executor, log=lambda _: None, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance with 2 CPUs for the module (the executor leaves it running)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["PYTHONPATH"] = str(ROOT)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_records_match_the_local_executor(tmp_path, ray_local):
    local, remote = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    assert _run_small(local).ran == 3
    executor = RayExecutor()
    try:
        summary = _run_small(remote, executor)
    finally:
        executor.shutdown()  # its workers hold the instance's CPUs until then
    assert (summary.ran, summary.failed) == (3, 0)
    ours, theirs = _records(local.root), _records(remote.root)
    assert [r["key"] for r in ours] == [r["key"] for r in theirs]  # the same cells
    for a, b in zip(ours, theirs, strict=True):
        assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
        assert a["history"][-1]["train_loss"] == pytest.approx(b["history"][-1]["train_loss"])
        assert (a["executor"], b["executor"]) == ("local", "ray")
        assert b["threads"] == 1 and b["pid"] != os.getpid()


def _noop_records(runs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / "noop" / "smoke").glob("*.json"))]


def _run_noop(store: RunStore, cells: int, executor) -> None:
    from tests.toy.noop import noop_table

    summary = run_table(noop_table(cells), profile="smoke", seeds=cells, device="cpu",
                        store=store, data_root=store.root.parent, executor=executor,
                        log=lambda _: None)  # fmt: skip
    assert (summary.ran, summary.failed) == (cells, 0)


def test_ray_workers_serve_many_cells_open_their_data_once_and_stay(tmp_path, ray_local):
    executor = RayExecutor()
    try:
        _run_noop(RunStore(tmp_path / "a"), 12, executor)
        _run_noop(RunStore(tmp_path / "b"), 6, executor)  # the next table: the same workers
    finally:
        executor.shutdown()  # stops the workers it started, and leaves the module's Ray running
    first, second = _noop_records(tmp_path / "a"), _noop_records(tmp_path / "b")
    pids = {r["pid"] for r in first}
    assert len(first) == 12 and len(pids) <= 2 and os.getpid() not in pids  # 2 CPUs: 2 workers
    assert {r["metrics"]["data_opened"] for r in first} == {1}  # once per worker, not per cell
    assert all(r["metrics"]["pid"] == r["pid"] for r in first)
    assert {r["pid"] for r in second} <= pids
    deadline = time.time() + 20
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert ray_local.is_initialized() and not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_local_executor_opens_the_data_once(tmp_path):
    """Forty no-op cells go through planning, their leases and their records with the
    table's data opened once (their cost per cell is measured by
    ``benchmarks/test_executor_overhead.py``, not here)."""
    from harness.run.executors import LocalExecutor

    _run_noop(RunStore(tmp_path / "runs"), 40, LocalExecutor())
    records = _noop_records(tmp_path / "runs")
    assert len(records) == 40
    opened = {r["metrics"]["data_opened"] for r in records}
    assert len(opened) == 1  # opened before the first cell, never again


STOP = """
import os, sys, ray
from harness.run.executors import RayExecutor
from harness.store.records import RunStore
from tests.faults.helpers import alive, children
from tests.test_executors import _run_noop

def descendants():
    return sorted(pid for pid in children(os.getpid()) if alive(pid))

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # a job given one core of a node
executor = RayExecutor()
_run_noop(RunStore(sys.argv[1]), 2, executor)
cpus = ray.cluster_resources()["CPU"]
before = descendants()
executor.shutdown()
print(cpus, len(before), ray.is_initialized(), descendants())
"""


def _stop(tmp_path: Path) -> tuple[str, ...]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a local instance of its own
    done = subprocess.run([sys.executable, "-c", STOP, str(tmp_path / "runs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return tuple(done.stdout.split(maxsplit=3))


def test_shutdown_stops_every_process_ray_started(tmp_path):
    """A run that started its own Ray instance leaves none of its processes behind; the
    instance has the CPUs the run may use (one core here), not the node's."""
    pytest.importorskip("ray")
    cpus, children, initialized, left = _stop(tmp_path)
    assert float(cpus) == 1
    assert int(children) >= 3  # the instance's processes and the workers
    assert initialized == "False" and left.strip() == "[]"


def test_shutdown_from_another_thread_is_refused_before_it_can_crash(monkeypatch):
    """Ray's driver stops only on the thread that started it (from another, the process
    died with SIGSEGV): such a call is a plain error, and Ray is left running."""
    ray = pytest.importorskip("ray")
    stopped = []
    monkeypatch.setattr(ray, "shutdown", lambda: stopped.append(1))
    executor = RayExecutor()
    executor._starter = threading.get_ident()
    errors = []

    def stop() -> None:
        try:
            executor.shutdown()
        except RuntimeError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=stop)
    worker.start()
    worker.join()
    assert errors == ["RayExecutor.shutdown must run on the thread that started Ray"]
    assert not stopped and executor._starter is not None
    executor.shutdown()
    assert stopped == [1] and executor._starter is None


@pytest.mark.slow
def test_a_run_without_address_starts_its_own_instance_beside_a_running_cluster(tmp_path):
    """Ray would join a cluster `ray start` left on this machine (and refuse the run's CPU
    count there); without --address the run is promised an instance of its own."""
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([ray, "start", "--head", "--block", "--port", str(port),
                             "--num-cpus", "1", "--include-dashboard=false"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    status = [ray, "status", "--address", f"127.0.0.1:{port}"]
    try:
        deadline = time.time() + 120
        while subprocess.run(status, env=env, capture_output=True).returncode != 0:
            assert head.poll() is None and time.time() < deadline, "ray start did not come up"
            time.sleep(1)
        _, children, initialized, left = _stop(tmp_path)
        assert int(children) >= 3 and initialized == "False" and left.strip() == "[]"
        assert subprocess.run(status, env=env, capture_output=True).returncode == 0  # still up
    finally:
        head.terminate()  # `ray start --block` stops what it started
        head.wait(timeout=60)


def test_a_cell_bigger_than_the_ray_cluster_is_refused_in_one_line(tmp_path, ray_local):
    from harness.core.errors import UserError

    with pytest.raises(UserError, match=r"asks for 64 CPUs .* the Ray cluster has 2"):
        _run_noop(RunStore(tmp_path / "runs"), 2, RayExecutor(cpus_per_cell=64))
    assert not _noop_records(tmp_path / "runs")


def test_a_cell_that_raises_is_recorded_as_failed_and_retried_alone(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    real = harness.tasks.classification.engine.train_classifier

    def flaky(model, data, protocol, **kwargs):
        if "fp_max_s2" in kwargs["desc"]:
            raise RuntimeError("simulated CUDA error: an illegal memory access")
        return real(model, data, protocol, **kwargs)

    monkeypatch.setattr(harness.tasks.classification.engine, "train_classifier", flaky)
    summary = _run_small(store)
    assert (summary.ran, summary.failed) == (2, 1)
    error = next((store.root / "table1" / "smoke").glob("mnist.fp_max_s2-*.error.txt"))
    assert "simulated CUDA error" in error.read_text() and "Traceback" in error.read_text()
    assert not list((store.root / "table1" / "smoke").glob("mnist.fp_max_s2-*.json"))
    assert not list((store.root / "table1" / "smoke").glob("*.lease"))

    calls = []
    monkeypatch.setattr(harness.tasks.classification.engine, "train_classifier",
                        lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))  # fmt: skip
    summary = _run_small(store)
    assert (summary.ran, summary.skipped, summary.failed) == (1, 2, 0)
    assert len(calls) == 1 and "fp_max_s2" in calls[0]
    assert not error.exists()  # the error file goes once the cell succeeds


def test_run_exits_nonzero_with_a_failed_cell(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(harness.tasks.classification.engine, "train_classifier", broken)
    runs = tmp_path / "runs"
    code = main(["run", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "table1 [smoke]: 0 trained, 0 already done, 7 failed, 0 unavailable" in out
    assert "FAILED, ValueError: boom" in out


def test_a_held_cell_is_left_to_its_holder_and_a_dead_holder_is_taken_over(tmp_path):
    store = RunStore(tmp_path / "runs")
    from harness.run.planning import lease_path
    from harness.tables.cells import table_cells

    config = table_cells(SMALL, "smoke", 1)[0]
    path = lease_path(store, config)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"host": os.uname().nodename, "pid": child.pid}))
        assert lease.acquire(path) is None  # a live holder keeps it
    finally:
        child.kill()
        child.wait()
    taken = lease.acquire(path)  # its pid is gone: taken over
    assert taken is not None and json.loads(path.read_text())["pid"] == os.getpid()
    taken.release()
    assert not path.exists()


def test_a_lease_with_an_old_heartbeat_is_stale_even_from_another_host(tmp_path):
    path = tmp_path / "cell.lease"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert not lease.is_stale(path)
    old = time.time() - lease.STALE_AFTER_S - 5
    os.utime(path, (old, old))
    assert lease.is_stale(path)


def test_two_runners_on_one_folder_train_every_cell_once(tmp_path):
    runs = tmp_path / "runs"
    args = ("run", "table1", "--profile", "smoke", "--runs-dir", str(runs),
            "--out", str(tmp_path / "out"), "--device", "cpu")  # fmt: skip
    first, second = _harness(*args), _harness(*args)
    outs = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    counts = [tuple(map(int, SUMMARY.search(out).groups())) for out in outs]
    assert sum(c[0] for c in counts) == 7, counts  # trained once in total
    assert all(c[0] + c[1] == 7 and c[2] == 0 for c in counts), counts  # each sees the table
    records = _records(runs)
    assert len(records) == 7
    pids = {r["pid"] for r in records}
    assert pids <= {first.pid, second.pid}


def test_kill_9_mid_cell_leaves_no_record_and_the_next_run_takes_the_cell_over(tmp_path):
    runs = tmp_path / "runs"
    args = ("run", "table1", "--profile", "smoke", "--runs-dir", str(runs),
            "--out", str(tmp_path / "out"), "--device", "cpu")  # fmt: skip
    runner = _harness(*args)
    folder = runs / "table1" / "smoke"
    deadline = time.time() + 300
    while not list(folder.glob("*.lease")) and time.time() < deadline:
        time.sleep(0.05)
    held = list(folder.glob("*.lease"))
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    assert held, "no cell was claimed"
    cell = held[0].name.removesuffix(".lease")
    assert not (folder / f"{cell}.json").exists()  # no partial record
    finished_before = len(list(folder.glob("*.json")))
    again = _harness(*args)
    out = again.communicate(timeout=900)[0]
    assert again.returncode == 0, out
    trained, done, failed, _ = map(int, SUMMARY.search(out).groups())
    assert (trained, done, failed) == (7 - finished_before, finished_before, 0)
    assert (folder / f"{cell}.json").exists() and not list(folder.glob("*.lease"))


@pytest.mark.slow
def test_kill_9_of_a_ray_worker_is_retried(tmp_path):
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    runner = _harness("run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out",
                      str(tmp_path / "out"), "--executor", "ray", "--device", "cpu")  # fmt: skip
    folder = runs / "table1" / "smoke"
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline and runner.poll() is None:
        for path in folder.glob("*.lease") if folder.is_dir() else ():
            holder = lease.read_holder(path)
            if holder and holder.get("pid"):
                victim = holder["pid"]
                break
        time.sleep(0.05)
    assert victim is not None and victim != runner.pid
    os.kill(victim, signal.SIGKILL)  # a Ray worker, mid-cell
    out = runner.communicate(timeout=900)[0]
    assert runner.returncode == 0, out
    trained, done, failed, _ = map(int, SUMMARY.search(out).groups())
    assert (trained + done, failed) == (7, 0), out
    assert len(_records(runs)) == 7


def test_a_ray_address_nothing_answers_at_is_one_line_in_seconds(tmp_path):
    """Ray would retry it for minutes; nothing is claimed or written meanwhile. (A process
    of its own: in this one the module's Ray instance may be up already.)"""
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    runner = _harness("run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out",
                      str(tmp_path / "out"), "--executor", "ray", "--address", "127.0.0.1:9")  # fmt: skip
    out = runner.communicate(timeout=120)[0]
    assert runner.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Ray cluster at 127.0.0.1:9: nothing" in errors[0]
    assert not list(runs.rglob("*.json")) and not list(runs.rglob("*.lease"))


def test_executor_options_are_checked_up_front(tmp_path, capsys):
    base = ["run", "table1", "--profile", "smoke", "--runs-dir", str(tmp_path / "r")]
    assert main([*base, "--address", "10.0.0.1:6379"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err
    assert main([*base, "--executor", "ray", "--gpus-per-cell", "0"]) == 2
    assert main([*base, "--executor", "ray", "--retries", "-1"]) == 2
    assert not (tmp_path / "r").exists()
