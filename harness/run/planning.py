"""Planning: a table spec becomes cells (test set x row x noise level x seed), each
with the config that determines its result and names its record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run import jobs
from harness.store import lease
from harness.store.records import RunStore, config_hash


def lease_path(store: RunStore, config: dict[str, Any]) -> Path:
    return store.path(config).with_suffix(lease.SUFFIX)


def error_path(store: RunStore, config: dict[str, Any]) -> Path:
    """Where a failed cell's error and traceback are kept until it succeeds."""
    return store.error_path(config)


@dataclass
class CellState:
    """One cell as the planner sees it now."""

    config: dict[str, Any]
    record: dict[str, Any] | None = None
    holder: dict[str, Any] | None = None  # a live lease: another runner is on it
    failed: Path | None = None  # the error file of its last failed attempt
    problem: str | None = None  # why the file where its record belongs is not a record
    job: dict[str, Any] | None = None  # its newest batch job (harness.run.jobs), if any
    job_state: str | None = None  # that job's state while it lives (None once it ended)

    @property
    def label(self) -> str:
        if self.record is not None:
            return "done"
        if self.holder is not None:
            return "running"
        if self.job_state is not None:
            return "queued" if self.job_state == "PENDING" else "running"
        if self.problem is not None or self.job_died:
            return "stale"
        return "failed" if self.failed is not None else "to run"

    @property
    def job_died(self) -> bool:
        """Its job ended without a record and without recording a failure: killed."""
        if self.job is None or self.job_state is not None or self.record is not None:
            return False
        return self.failed is None or self.failed.stat().st_mtime < self.job["submitted_at"]


@dataclass
class Plan:
    cells: list[CellState] = field(default_factory=list)

    def where(self, label: str) -> list[CellState]:
        return [c for c in self.cells if c.label == label]


def plan_cells(configs: list[dict[str, Any]], store: RunStore, force: bool = False) -> Plan:
    """Which cells are done, held by a live runner, stale (a file that is not a finished
    record: quarantined when the cell runs), failed before, or still to run. Reads only."""
    plan = Plan()
    for config in configs:
        state = CellState(config)
        if not force:
            state.record, state.problem = store.inspect(config)
        if state.record is None:
            path = lease_path(store, config)
            if path.exists() and not lease.is_stale(path):
                state.holder = lease.read_holder(path) or {"host": "?", "pid": "?"}
            error = error_path(store, config)
            state.failed = error if error.is_file() else None
        plan.cells.append(state)
    _add_jobs(plan, store)
    return plan


def _add_jobs(plan: Plan, store: RunStore) -> None:
    """Each unfinished cell's newest batch job and its state, from the submission index
    and the queue (asked only when some unfinished cell was ever submitted)."""
    index = jobs.submissions(store.root)
    if not index:
        return
    waiting = [c for c in plan.cells if c.record is None and config_hash(c.config) in index]
    for cell in waiting:
        cell.job = index[config_hash(cell.config)]
    states = jobs.job_states([c.job for c in waiting if c.job is not None])
    for cell in waiting:
        if states is None:  # the queue cannot be asked: nothing is declared dead
            cell.job_state = "UNKNOWN"
        else:
            cell.job_state = states.get(cell.job["job"]) if cell.job else None


def describe_holder(holder: dict[str, Any]) -> str:
    return f"{holder.get('host')} pid {holder.get('pid')} since {holder.get('started_at')}"
