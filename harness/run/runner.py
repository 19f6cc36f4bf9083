"""A table's run: plan (its cells, finished ones skipped) -> executor -> the store.

The runner names no task and no executor: the plan comes from :mod:`planning`, each
cell runs through :func:`harness.run.cell.execute_cell` wherever the executor puts it, and
records reach the store from there. Cells another runner holds are waited for, and
taken over if their holder dies, so every runner ends with the whole table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.core.errors import UserError
from harness.core.runtime import Runtime
from harness.core.task import RunOptions, get_task
from harness.run.cell import DONE, FAILED, TRAINED, UNAVAILABLE, Outcome, preload
from harness.run.executors import LocalExecutor, RayExecutor
from harness.run.planning import describe_holder, lease_path, plan_cells
from harness.store import lease
from harness.store.records import RunStore
from harness.store.tracking import Tracking
from harness.tables.cells import table_cells
from harness.tables.paper import TableSpec
from harness.train import distributed

MAX_WORKERS = 256
WAIT_POLL_S = 2.0


def check_workers(workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be 1 to {MAX_WORKERS}, got {workers}")


def _say(line: str) -> None:
    """Progress lines, written around any progress bar and flushed, so that logs
    redirected to a file show them as they happen."""
    tqdm.write(line)
    sys.stdout.flush()


@dataclass
class RunSummary:
    ran: int = 0
    skipped: int = 0  # finished before (by this runner or another)
    failed: int = 0
    unavailable: int = 0  # cells whose method needs a package that is not installed

    def line(self, table: str, profile: str) -> str:
        return (
            f"{table} [{profile}]: {self.ran} trained, {self.skipped} already done, "
            f"{self.failed} failed, {self.unavailable} unavailable"
        )


def run_table(
    spec: TableSpec,
    *,
    profile: str,
    seeds: int,
    device: torch.device | str,
    store: RunStore,
    data_root: Path,
    download: bool = True,
    force: bool = False,
    started: float | None = None,
    runtime: Runtime = Runtime(),
    test_dir: Path | None = None,
    denoiser_weights: Path | None = None,
    workers: int = 1,
    executor: LocalExecutor | RayExecutor | None = None,
    log: Callable[[str], None] = _say,
    track: Tracking | None = None,
    command: str = "",
) -> RunSummary:
    """Run every cell of ``spec`` that has no finished record (all of them with ``force``).

    ``started`` (default: now) dates the run for ``force``: models trained since then, by
    this table or another of the same run, count as fresh and are reused. ``track``
    receives each record as its cell finishes; ``command`` is the command line the
    records name."""
    check_workers(workers)
    executor = executor or LocalExecutor()
    options = RunOptions(
        data_root=Path(data_root), runs_dir=store.root, device=str(device), runtime=runtime,
        download=download, force=force, started=time.time() if started is None else started,
        test_dir=test_dir, denoiser_weights=denoiser_weights,
        workers=workers, executor=executor.name, command=command,
    )  # fmt: skip
    protocol = spec.protocol(profile)
    task = get_task(spec.task)
    configs = table_cells(spec, profile, seeds, test_dir, options)
    here = distributed.world()
    if here.distributed and (not task.distributed or not isinstance(executor, LocalExecutor)):
        raise UserError(
            f"{spec.name} keeps its data on one device and runs as one process; torchrun is "
            "for tables read from image folders (imagenet), with the local executor"
        )
    if not here.is_main:
        log = _silent
    store.check_writable()
    task.check(protocol, options)
    plan = plan_cells(configs, store, force)
    summary = RunSummary(skipped=len(plan.where("done")))
    pending = [c.config for c in plan.cells if c.record is None]
    if pending and isinstance(executor, LocalExecutor):
        preload(pending[0], options, spec)  # the cells run here: refuse bad data first
    held = len(plan.where("running"))
    log(f"{spec.name} [{profile}]: {len(configs)} cells, {summary.skipped} already done, "
        f"{len(pending)} to run ({held} held by other runners) on {options.device} "
        f"with the {executor.name} executor")  # fmt: skip

    def done(outcome: Outcome) -> None:
        config = outcome.config
        name = f"{config['variant']}" + (f" sigma {config['sigma']}" if "sigma" in config else "")
        name += f" on {config['test_set']}" if "test_set" in config else ""
        name += f" seed {config['seed']}"
        if outcome.status == TRAINED:
            summary.ran += 1
            log(f"  {name}: {outcome.message} -> {outcome.path}")
            if track is not None and (record := store.load(config)) is not None:
                track.log(record | {"_path": outcome.path}, [m.name for m in task.metrics])
        elif outcome.status == DONE:
            summary.skipped += 1
            log(f"  {name}: {outcome.message}")
        elif outcome.status == FAILED:
            summary.failed += 1
            where = f" (traceback: {outcome.path})" if outcome.path else ""
            log(f"  {name}: FAILED, {outcome.message}{where}")
        elif outcome.status == UNAVAILABLE:
            summary.unavailable += 1
            log(f"  {name}: not run, {outcome.message}")
        else:
            waiting.append(config)
            log(f"  {name}: held by {outcome.message}; waiting for it")

    # one bar for the table where the cells' own bars are out of sight (in Ray workers)
    bar = tqdm(total=len(pending), desc=spec.name, unit="cell", leave=False,
               disable=None if isinstance(executor, RayExecutor) else True)  # fmt: skip
    while pending:
        waiting: list[dict[str, Any]] = []
        executor.run(pending, options, lambda outcome: (done(outcome), bar.update()), spec)
        pending = _wait_for(waiting, store, log)
        bar.update(-len(pending))
        options = replace(options, force=False)  # what another runner finished stays done
    bar.close()
    return summary


def _wait_for(
    configs: list[dict[str, Any]], store: RunStore, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Wait while other runners hold ``configs``; those finished count as done (the
    next executor pass sees their records), those whose holder died are returned."""
    polls = 0
    while configs:
        for config in configs:
            path = lease_path(store, config)
            if store.load(config) is not None or not path.exists() or lease.is_stale(path):
                # run them all again: finished ones report as done, orphaned ones are taken
                # over, and those still held come back held
                return configs
        if polls % 30 == 0:
            holders = {describe_holder(lease.read_holder(lease_path(store, c)) or {})
                       for c in configs}  # fmt: skip
            log(f"  waiting for {len(configs)} cells held by: {'; '.join(sorted(holders))}")
        polls += 1
        time.sleep(WAIT_POLL_S)
    return []


def _silent(_: str) -> None:
    """The log of ranks other than 0."""
