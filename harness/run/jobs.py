"""The submission index: which batch job (SLURM, or submitit's local backend) each
submitted cell went to, and whether that job still lives.

The run store and leases decide what is done; this index only lets ``plan`` and
``wait`` name a cell's job and log, tell a queued cell from one nobody will run, and
tell a cell whose job died (``scancel``, a time limit, a lost node) from one that
failed. It is one JSON line per submitted cell in ``<runs>/slurm/jobs.jsonl`` (the
newest line of a cell wins), beside the jobs' logs in ``<runs>/slurm/logs/``. Job
states come from ``squeue`` (no accounting database needed) or, for local jobs, from
the process table.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import subprocess
from pathlib import Path
from typing import Any

from harness.store import lease

INDEX = Path("slurm") / "jobs.jsonl"
LOGS = Path("slurm") / "logs"
SLURM, LOCAL = "slurm", "submitit-local"  # backends


def index_path(runs_root: Path) -> Path:
    return Path(runs_root) / INDEX


def record_submissions(runs_root: Path, entries: list[dict[str, Any]]) -> None:
    """Append ``entries`` (each with at least ``key``, ``backend``, ``job``, ``log``)."""
    path = index_path(runs_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    with path.open("ab+") as handle:  # one write: concurrent submitters do not interleave
        end = handle.seek(0, 2)
        if end:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":  # after a write cut short, start a line of our own
                lines = "\n" + lines
        handle.write(lines.encode())


def submissions(runs_root: Path) -> dict[str, dict[str, Any]]:
    """The newest submission of each cell, by config hash (lines that do not parse,
    say a write cut short, are skipped: the index is advice, never the authority)."""
    found: dict[str, dict[str, Any]] = {}
    try:
        lines = index_path(runs_root).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                found[entry["key"]] = entry
    return found


def _squeue() -> dict[str, str] | None:
    """This user's unfinished SLURM jobs, one per array task: ``{"12_3": "PENDING"}``;
    None when squeue cannot be asked (not installed, controller unreachable)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _process_state(pid: str) -> str | None:
    """RUNNING while the local job's process lives (a zombie has ended), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "RUNNING" if pid.isdigit() and lease.pid_alive(int(pid)) else None
    return None if stat.rsplit(")", 1)[-1].split()[0] in "ZX" else "RUNNING"


def job_states(entries: list[dict[str, Any]]) -> dict[str, str | None] | None:
    """Each entry's job state (``PENDING``, ``RUNNING``, ...; None once it has ended),
    by job id; None when SLURM cannot be asked, so that nothing is declared dead."""
    states: dict[str, str | None] = {}
    queue = None
    if any(e["backend"] == SLURM for e in entries):
        queue = _squeue()
        if queue is None:
            return None
    for entry in entries:
        job = entry["job"]
        states[job] = queue.get(job) if entry["backend"] == SLURM else _process_state(job)
    return states


def last_log_line(entry: dict[str, Any]) -> str:
    """Why the job ended, as its logs say: SLURM's last ``*** ... CANCELLED / DUE TO TIME
    LIMIT / DUE TO NODE FAILURE ***`` notice if there is one, else the last line of its
    error log, else of its output log."""
    for key in ("err", "log"):
        with contextlib.suppress(OSError):
            with open(entry[key], "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 8192))
                lines = [x.strip() for x in handle.read().decode(errors="replace").splitlines()]
            lines = [x for x in lines if x]
            notices = [x for x in lines if "***" in x]
            if notices or lines:
                return (notices or lines)[-1]
    return "(its log is empty or missing)"


def describe_job(entry: dict[str, Any], state: str | None) -> str:
    what = "SLURM job" if entry["backend"] == SLURM else "local job"
    return f"{what} {entry['job']}{f' {state}' if state else ''}, log {entry['log']}"
