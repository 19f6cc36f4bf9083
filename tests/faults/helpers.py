"""Shared pieces of the fault-injection suite: running the CLI and checking its refusals."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``python -m harness ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_refused(capsys, *args: str, says: str, nothing_under: Path | None = None) -> str:
    """The command fails with exit 2 and one line on stderr (no traceback) containing
    ``says``; nothing is created under ``nothing_under``. The line is returned."""
    before = _tree(nothing_under)
    code, _, err = cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert says in lines[0], lines[0]
    assert _tree(nothing_under) == before, "the refused command wrote files"
    return lines[0]


def _tree(folder: Path | None) -> set[str]:
    if folder is None or not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m harness ARGS`` as a child process (its own session, so a test can
    kill exactly it and find its children by pid)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *map(str, args)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), depth first."""
    found = []
    for child in _direct_children(pid):
        found += [child, *children(child)]
    return found


def _direct_children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_all(pids: list[int]) -> None:
    """Clean up by pid after a failed test (never by name)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
