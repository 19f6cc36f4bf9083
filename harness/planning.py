"""Planning: a table spec becomes cells (test set x row x noise level x seed), each
with the config that determines its result and names its record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import variant_info

from . import lease
from .errors import UserError
from .store import SCHEMA, RunStore, config_hash, jsonable
from .tables import TableSpec
from .tasks import RunOptions, get_task

MAX_SEEDS = 1000  # more is a typo, not an experiment


def cell_config(
    spec: TableSpec, variant: str, profile: str, seed: int, sigma: int | None = None,
    test_dir: Path | None = None, test_set: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Everything that determines a cell's result; its hash names the record."""
    info = variant_info(variant)
    extra: dict[str, Any] = {} if sigma is None else {"sigma": sigma}
    if test_dir is not None:
        extra["test_dir"] = str(Path(test_dir).resolve())
    if test_set is not None:
        extra["test_set"] = test_set
    return {
        "schema": SCHEMA,
        "table": spec.name,
        "row": spec.row_label(variant),
        "variant": variant,
        "arch": info.arch,
        "model": jsonable(info.kwargs),
        "profile": profile,
        "seed": seed,
        "protocol": jsonable(spec.protocol(profile)),
        "paper_flops": spec.paper_flops,
        **extra,
    }


# config keys that tell records of one row apart (the report keeps the newest per seed and sigma)
_PER_RECORD = ("seed", "sigma", "denoiser_weights")


def cell_key(config: dict[str, Any]) -> str:
    """The hash of a config without its seed and noise level: records of one row share it."""
    return config_hash({k: v for k, v in config.items() if k not in _PER_RECORD})


def test_blocks(
    spec: TableSpec, profile: str, test_dir: Path | None = None
) -> tuple[str | None, ...]:
    """The test sets a table repeats its rows for (Table 6: BSD500 and TID2008), or
    ``(None,)`` when it has one (``--test-dir`` makes one of any table)."""
    return get_task(spec.task).blocks(spec.protocol(profile), test_dir)


def table_cells(
    spec: TableSpec, profile: str, seeds: int, test_dir: Path | None = None,
    options: RunOptions | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Test sets x rows x noise levels (denoising tables) x seeds, in the paper's order."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserError(f"--seeds must be 1 to {MAX_SEEDS}, got {seeds}")
    task = get_task(spec.task)
    if test_dir is not None and not task.accepts_test_dir:
        raise UserError(f"--test-dir applies to denoising tables; {spec.name} is {spec.task}")
    extra = task.extra_config(spec.protocol(profile), options) if options is not None else {}
    return [
        {**cell_config(spec, v, profile, s, sigma, test_dir, block), **extra}
        for block in test_blocks(spec, profile, test_dir)
        for v in spec.rows
        for sigma in spec.sigmas or (None,)
        for s in range(seeds)
    ]


def lease_path(store: RunStore, config: dict[str, Any]) -> Path:
    return store.path(config).with_suffix(lease.SUFFIX)


def error_path(store: RunStore, config: dict[str, Any]) -> Path:
    """Where a failed cell's error and traceback are kept until it succeeds."""
    return store.path(config).with_suffix(".error.txt")


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
