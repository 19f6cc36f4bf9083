"""Planning: a table spec becomes cells (test set x row x noise level x seed), each
with the config that determines its result and names its record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store import lease
from harness.store.records import RunStore


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

    @property
    def label(self) -> str:
        if self.record is not None:
            return "done"
        if self.holder is not None:
            return "running"
        if self.problem is not None:
            return "stale"
        return "failed" if self.failed is not None else "to run"


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
    return plan


def describe_holder(holder: dict[str, Any]) -> str:
    return f"{holder.get('host')} pid {holder.get('pid')} since {holder.get('started_at')}"
