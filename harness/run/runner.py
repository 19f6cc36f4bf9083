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
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from harness.core.errors import UserError
from harness.core.protocol import Protocol
from harness.core.runtime import Runtime
from harness.core.task import RunOptions, get_task
from harness.run.cell import (
    DONE,
    FAILED,
    SUBMITTED,
    TRAINED,
    UNAVAILABLE,
    Outcome,
    describe_cell,
    preload,
)
from harness.run.executors import LocalExecutor, RayExecutor
from harness.run.jobs import LOCAL, SLURM
from harness.run.planning import describe_holder, lease_path, plan_cells
from harness.run.slurm import SlurmExecutor, make_batch_executor, wait_for_submitted
from harness.store import lease
from harness.store.records import RunStore
from harness.store.tracking import Tracking
from harness.tables.cells import table_cells
from harness.tables.paper import TableSpec
from harness.train import distributed

if TYPE_CHECKING:  # an annotation: commands that only read records never import torch
    import torch

Executor = LocalExecutor | RayExecutor | SlurmExecutor

MAX_WORKERS = 256
EXECUTORS = ("local", "ray", SLURM, LOCAL)
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
    submitted: int = 0  # left queued or running in batch jobs (a detached run)

    def line(self, table: str, profile: str) -> str:
        left = f", {self.submitted} in batch jobs" if self.submitted else ""
        return (
            f"{table} [{profile}]: {self.ran} trained, {self.skipped} already done, "
            f"{self.failed} failed, {self.unavailable} unavailable{left}"
        )


def _tally(
    summary: RunSummary, log: Callable[[str], None], waiting: list[dict[str, Any]]
) -> Callable[[Outcome], None]:
    """What the runner does with each outcome: count it and log one line (cells held
    by another runner go to ``waiting``)."""

    def done(outcome: Outcome) -> None:
        name = describe_cell(outcome.config)
        if outcome.status == TRAINED:
            summary.ran += 1
            log(f"  {name}: {outcome.message} -> {outcome.path}")
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
        elif outcome.status == SUBMITTED:
            summary.submitted += 1
            log(f"  {name}: {outcome.message}")
        else:
            waiting.append(outcome.config)
            log(f"  {name}: held by {outcome.message}; waiting for it")

    return done


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
    executor: Executor | None = None,
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
    configs = table_cells(spec, profile, seeds, test_dir, options)
    _check_run(spec, executor, store, options, protocol)
    if not distributed.world().is_main:
        log = _silent
    summary, pending = _survey(spec, profile, configs, store, options, executor, log)
    _run_pending(pending, spec, executor, options, store, summary, log, track)
    if not (isinstance(executor, SlurmExecutor) and executor.detach):
        summary.submitted = 0  # followed to their end: counted as trained or failed
    return summary


def _survey(
    spec: TableSpec, profile: str, configs: list[dict[str, Any]], store: RunStore,
    options: RunOptions, executor: Executor, log: Callable[[str], None],
) -> tuple[RunSummary, list[dict[str, Any]]]:  # fmt: skip
    """The cells still to run, and a summary counting those already done; says so in one
    line. Cells that run here open their data first, so bad data is refused early."""
    plan = plan_cells(configs, store, options.force)
    summary = RunSummary(skipped=len(plan.where("done")))
    pending = [c.config for c in plan.cells if c.record is None]
    if pending and isinstance(executor, LocalExecutor):
        preload(pending[0], options, spec)  # the cells run here: refuse bad data first
    held = len(plan.where("running"))
    log(f"{spec.name} [{profile}]: {len(configs)} cells, {summary.skipped} already done, "
        f"{len(pending)} to run ({held} held by other runners) on {options.device} "
        f"with the {executor.name} executor")  # fmt: skip
    return summary, pending


def _check_run(
    spec: TableSpec, executor: Executor, store: RunStore, options: RunOptions,
    protocol: Protocol,
) -> None:  # fmt: skip
    """Refuse a run that cannot work (torchrun for a one-device table, an unwritable runs
    folder, what the task itself refuses) before any cell is claimed."""
    task = get_task(spec.task)
    here = distributed.world()
    if here.distributed and (not task.distributed or not isinstance(executor, LocalExecutor)):
        raise UserError(
            f"{spec.name} keeps its data on one device and runs as one process; torchrun is "
            "for tables read from image folders (imagenet), with the local executor"
        )
    store.check_writable()
    task.check(protocol, options)


def _run_pending(
    pending: list[dict[str, Any]], spec: TableSpec, executor: Executor, options: RunOptions,
    store: RunStore, summary: RunSummary, log: Callable[[str], None], track: Tracking | None,
) -> None:  # fmt: skip
    """Hand the cells to the executor, tallying outcomes, until none is left to run: cells
    that another runner held are waited for and rerun if it gave them up."""
    metrics = [m.name for m in get_task(spec.task).metrics]
    # one bar for the table where the cells' own bars are out of sight (in Ray workers)
    bar = tqdm(total=len(pending), desc=spec.name, unit="cell", leave=False,
               disable=None if isinstance(executor, RayExecutor) else True)  # fmt: skip
    waiting: list[dict[str, Any]] = []  # cells another runner held in this pass
    tally = _tally(summary, log, waiting)

    def done(outcome: Outcome) -> None:
        tally(outcome)
        bar.update()
        if (
            track is not None
            and outcome.status == TRAINED
            and (record := store.load(outcome.config)) is not None
        ):
            track.log(record | {"_path": outcome.path}, metrics)

    while pending:
        waiting.clear()
        executor.run(pending, options, done, spec)
        pending = _wait_for(list(waiting), store, log)
        bar.update(-len(pending))
        options = replace(options, force=False)  # what another runner finished stays done
    bar.close()


def follow_table(
    spec: TableSpec, profile: str, store: RunStore, log: Callable[[str], None] = _say
) -> RunSummary:
    """``harness wait``: follow the table's cells that batch jobs are running, until each
    has ended; what they made of them."""
    summary = RunSummary()
    following = wait_for_submitted(spec.name, profile, store, _tally(summary, log, []), log)
    log(f"{spec.name} [{profile}]: followed {following} submitted cells")
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


def make_executor(
    name: str, *, address: str | None = None, gpus_per_cell: float = 1.0,
    cpus_per_cell: float | None = None, retries: int | None = None, **batch: Any,
) -> LocalExecutor | RayExecutor | SlurmExecutor:  # fmt: skip
    """The executor ``name``, its options checked; ``batch``: the options of the batch
    executors (``--partition`` and the like), refused by the others."""
    if name in (SLURM, LOCAL):
        if address is not None:
            raise UserError("--address needs --executor ray")
        return make_batch_executor(name, gpus_per_cell=gpus_per_cell, retries=retries or 0,
                                   cpus_per_cell=cpus_per_cell, **batch)  # fmt: skip
    for option, value in batch.items():
        if value:
            flag = "slurm-arg" if option == "slurm_args" else option.replace("_", "-")
            raise UserError(f"--{flag} needs --executor slurm")
    retries = 2 if retries is None else retries
    if name == "local":
        if address is not None:
            raise UserError("--address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        if not 0 < gpus_per_cell <= 8:
            raise UserError(f"--gpus-per-cell must be in (0, 8], got {gpus_per_cell}")
        if cpus_per_cell is not None and cpus_per_cell <= 0:
            raise UserError(f"--cpus-per-cell must be positive, got {cpus_per_cell}")
        if not 0 <= retries <= 100:
            raise UserError(f"--retries must be between 0 and 100, got {retries}")
        return RayExecutor(address, gpus_per_cell, cpus_per_cell, retries)
    raise UserError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
