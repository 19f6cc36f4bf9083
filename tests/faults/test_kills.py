"""Processes killed or refused mid-run: kill -9 at random points, a kill inside a weights
write, SIGTERM, two runners on one folder, a disk that fills or turns read-only. Each
starts from a copy of a finished Table 1 smoke run with some cells removed."""

import builtins
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import harness.store.records
from harness.store.records import RunStore, record_problem, stale_temps
from tests.faults.helpers import ROOT, children, cli, kill_all, spawn, wait_gone

SMOKE = ("--profile", "smoke")


def _remove_cells(runs, count):
    """Remove the records and weights of ``count`` cells; the records left, by path."""
    records = sorted(p for p in (runs / "table1" / "smoke").glob("*.json"))
    for record in records[:count]:
        record.unlink()
        record.with_suffix(".pt").unlink()
    return {p: p.stat().st_mtime_ns for p in records[count:]}


def _args(runs):
    return ("run", "table1", *SMOKE, "--runs-dir", runs, "--out", runs.parent / "reports")


def _assert_complete(runs, untouched, capsys):
    """Every cell has a valid record, finished cells were not redone, nothing is left over."""
    code, out, err = cli(capsys, "plan", "table1", *SMOKE, "--runs-dir", runs)
    assert code == 0 and "7 of 7 cells done" in out, out + err
    for path in (runs / "table1" / "smoke").glob("*.json"):
        record = json.loads(path.read_text())
        assert record_problem(record, path.stem.rsplit("-", 1)[1]) is None, path
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items()), (
        "a finished cell was redone"
    )
    assert not stale_temps(runs) and not list(runs.rglob("*.tmp"))
    assert not (runs / "_quarantine").exists()


def _stop(process):
    """Kill a test's own child and its children, by pid."""
    kids = children(process.pid)
    kill_all([process.pid, *kids])
    process.wait()
    kill_all(wait_gone(kids, timeout=5))


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume(runs_copy, capsys):
    untouched = _remove_cells(runs_copy, 3)
    rng = random.Random(16)
    for _ in range(3):
        process = spawn(*_args(runs_copy))
        assert "to run" in process.stdout.readline()  # started: imports done, cells planned
        time.sleep(rng.uniform(0.0, 15.0))
        _stop(process)
    assert cli(capsys, *_args(runs_copy))[0] == 0
    _assert_complete(runs_copy, untouched, capsys)


HOOK = """
import os, sys, time
from pathlib import Path
fsync = os.fsync
def held(fd):
    if ".pt." in os.readlink(f"/proc/self/fd/{fd}"):  # a weights file, fully written, not renamed
        Path(sys.argv[1]).touch()
        time.sleep(600)
    fsync(fd)
os.fsync = held
from harness.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_kill_during_a_weights_write_leaves_nothing_behind(runs_copy, tmp_path, capsys):
    untouched = _remove_cells(runs_copy, 1)
    marker = tmp_path / "in-write"
    process = subprocess.Popen(
        [sys.executable, "-c", HOOK, str(marker), *map(str, _args(runs_copy))], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the run never wrote weights"
    finally:
        _stop(process)
    (temp,) = list(runs_copy.rglob(".*.pt.*.tmp"))
    assert f".{process.pid}." in temp.name and temp.stat().st_size > 1_000_000  # writer's pid
    code, out, _ = cli(capsys, "plan", "table1", *SMOKE, "--runs-dir", runs_copy)
    assert code == 0 and "1 temporary file(s) left by killed writes" in out and str(temp) in out
    assert cli(capsys, *_args(runs_copy))[0] == 0
    assert not temp.exists()
    _assert_complete(runs_copy, untouched, capsys)


@pytest.mark.slow
def test_sigterm_exits_143_and_keeps_finished_cells(runs_copy, capsys):
    untouched = _remove_cells(runs_copy, 1)
    process = spawn(*_args(runs_copy))
    try:
        line = process.stdout.readline()
        assert "6 already done, 1 to run" in line, line
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        err = process.stderr.read()
        assert code == 143, f"exit {code}\n{process.stdout.read()[-2000:]}\n{err[-3000:]}"
        assert "interrupted" in err
    finally:
        _stop(process)
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())


@pytest.mark.slow
def test_two_runners_on_one_folder(runs_copy, capsys):
    untouched = _remove_cells(runs_copy, 3)
    first, second = spawn(*_args(runs_copy)), spawn(*_args(runs_copy))
    try:
        assert first.wait(timeout=900) == 0, first.stderr.read()
        assert second.wait(timeout=900) == 0, second.stderr.read()
    finally:
        _stop(first)
        _stop(second)
    _assert_complete(runs_copy, untouched, capsys)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_midway(runs_copy, capsys, monkeypatch, error):
    untouched = _remove_cells(runs_copy, 2)
    real, writes = harness.store.records.atomic_write_bytes, []

    def failing(path, data):
        writes.append(path)
        if path.suffix == ".json" and sum(p.suffix == ".json" for p in writes) == 2:
            raise OSError(error, os.strerror(error), str(path))
        real(path, data)

    monkeypatch.setattr(harness.store.records, "atomic_write_bytes", failing)
    code, _, err = cli(capsys, *_args(runs_copy))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: cannot write the record")
    assert os.strerror(error) in err and writes[-1].stem in err  # the cell in flight, named
    done = [p for p in (runs_copy / "table1" / "smoke").glob("*.json") if p not in untouched]
    assert len(done) == 1 and record_problem(json.loads(done[0].read_text())) is None


def _refuse_writes_under(monkeypatch, root, error, once):
    """Every write under ``root`` (files opened for writing, folders made, renames, links,
    and removals for a read-only folder) fails with ``error`` once ``once()`` is true: a
    runs folder that turns read-only or fills up. Simulated at the OS calls, since tests
    run as root, where chmod does not stop writes."""
    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "link", "unlink")}
    real_open = io.open

    def refused(path):
        inside = str(os.path.abspath(os.fspath(path))).startswith(str(root))
        return inside and once()

    def fail(path):
        raise OSError(error, os.strerror(error), os.fspath(path))

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
            fail(path)
        return real["open"](path, flags, *args, **kwargs)

    def two_paths(name):
        def call(src, dst, *args, **kwargs):
            if refused(dst):
                fail(dst)
            return real[name](src, dst, *args, **kwargs)

        return call

    def one_path(name, errors_when):
        def call(path, *args, **kwargs):
            if errors_when(path) and refused(path):
                fail(path)
            return real[name](path, *args, **kwargs)

        return call

    def io_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax+") and refused(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", one_path("mkdir", lambda p: not os.path.isdir(p)))
    monkeypatch.setattr(os, "replace", two_paths("replace"))
    monkeypatch.setattr(os, "link", two_paths("link"))
    read_only = error == errno.EROFS  # a full disk still lets files be removed
    monkeypatch.setattr(os, "unlink", one_path("unlink", lambda p: read_only and os.path.exists(p)))
    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr(builtins, "open", io_open)


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC])
def test_runs_dir_turns_read_only_or_full_after_a_cell(runs_copy, capsys, monkeypatch, error):
    untouched = _remove_cells(runs_copy, 3)
    saved = []
    real_save = RunStore.save

    def save(self, record):
        path = real_save(self, record)
        saved.append(path)
        return path

    monkeypatch.setattr(RunStore, "save", save)
    _refuse_writes_under(monkeypatch, runs_copy, error, lambda: bool(saved))
    code, out, err = cli(capsys, *_args(runs_copy))
    monkeypatch.undo()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: cannot write") and os.strerror(error) in err
    assert str(runs_copy) in err  # names the file it could not write
    assert "FAILED" not in out and not list(runs_copy.rglob("*.error.txt"))
    (finished,) = saved  # the cell finished before the folder turned is kept
    assert record_problem(json.loads(finished.read_text())) is None
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())
    if error == errno.ENOSPC:  # its own leases released where the disk allows
        assert not list(runs_copy.rglob("*.lease"))
