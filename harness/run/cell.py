"""One cell, self-contained: its config plus the run options are all any process on any
machine needs to claim it, train and test it, and store its record.

:func:`execute_cell` is what every executor calls (in this process, or in a Ray
worker). Data and architecture-only measurements are cached per process, so a worker
that runs several cells of one table loads the table's data once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import machine
from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.core.plugins import PluginError, load_plugins
from harness.core.protocol import Protocol
from harness.core.runtime import resolve_device
from harness.core.task import CellContext, RunOptions, Task, get_task
from harness.run.planning import describe_holder, error_path, lease_path
from harness.store import lease
from harness.store.records import (
    SCHEMA,
    STORAGE_ERRNOS,
    RunStore,
    atomic_write_text,
    config_hash,
    environment,
    storage_error,
)
from harness.tables.cells import cell_key
from harness.tables.costs import measured_columns
from harness.tables.paper import TableSpec, get_table
from harness.tables.variants import define_from_config
from harness.train import distributed
from registry.models.classical import MissingDependency

if TYPE_CHECKING:
    import torch

    from harness.train.loop import TrainResult
else:  # commands that only read records never import torch (issue 29)
    torch = lazy("torch")

# outcomes of one cell
TRAINED, DONE, HELD, FAILED, UNAVAILABLE = "trained", "done", "held", "failed", "unavailable"
REFUSED = "refused"  # a UserError where the cell ran: the run stops with it, as it would here
SUBMITTED = "submitted"  # handed to a batch job (SLURM): its record is the outcome that counts


@dataclass
class Outcome:
    """What became of a cell; small and picklable, so it travels back from a worker."""

    config: dict[str, Any]
    status: str
    message: str = ""  # the metrics line, the holder, or the error's last line
    path: str | None = None  # the record, or the error file of a failed cell
    metrics: dict[str, Any] = field(default_factory=dict)


def _data(task_name: str, protocol: Protocol, options: RunOptions, device: torch.device) -> Any:
    """A table's data, opened once per process (per table and device): options that only
    say how cells run (``force``, threads) do not open it again."""
    return _opened(task_name, protocol, replace(options, force=False, threads=None), device)


@functools.lru_cache(maxsize=2)
def _opened(task_name: str, protocol: Protocol, options: RunOptions, device: torch.device) -> Any:
    return get_task(task_name).open_data(protocol, options, device)


def preload(config: dict[str, Any], options: RunOptions, spec: TableSpec | None = None) -> None:
    """Open a cell's data in this process before any cell is claimed, so that missing or
    refused data is one line and exit 2 with nothing written (the cells then reuse it).
    ``spec``: the table, when the caller holds it (else the registered one)."""
    task = (spec or get_table(config["table"])).task
    _, device = distributed.setup(resolve_device(options.device))
    _data(task, get_task(task).protocol_of(config), options, device)


def _claim(path: Path, device: torch.device) -> lease.Lease | None:
    """The lease, taken by rank 0 and the decision shared with every torchrun rank."""
    here = distributed.world()
    claimed = lease.acquire(path, str(device)) if here.is_main else None
    if here.distributed:
        flag = torch.tensor([1 if claimed else 0], device=device)
        if not distributed.all_sum(flag).item():
            return None
        return claimed or lease.Lease(path, {"pid": None, "host": None})  # ranks > 0 hold none
    return claimed


def execute_cell(
    config: dict[str, Any], options: RunOptions, index: str = "", spec: TableSpec | None = None
) -> Outcome:
    """Claim, run and store one cell. A cell that raises is recorded as failed (its
    traceback beside the record) and never as done; a bad option (``UserError``),
    storage that refuses writes (one line naming the file) and Ctrl-C propagate, since
    they concern every cell. ``spec`` is the table when the
    caller holds it (an unregistered variation of one); else the registered table."""
    store = RunStore(options.runs_dir)
    try:
        load_plugins(config.get("plugins", ()))  # the modules the cell's model needs, here
    except PluginError as exc:  # this process cannot build the model; other cells go on
        host = socket.gethostname()
        line = f"plugin {exc.module!r} failed to import on host {host}: {exc.reason}"
        return _failed(store, config, exc, line)
    try:
        return _execute(config, options, store, index, spec or get_table(config["table"]))
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:  # one cell's failure, not the run's
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:  # every cell's: stop
            raise storage_error(exc) from None
        line = (str(exc).strip().splitlines() or [""])[0]
        return _failed(store, config, exc, f"{type(exc).__name__}: {line}")


def _failed(store: RunStore, config: dict[str, Any], exc: Exception, line: str) -> Outcome:
    """A failed cell: its traceback beside where its record would be, and one line."""
    where = error_path(store, config)
    text = "".join(traceback.format_exception(exc))
    stamp = f"{datetime.now(UTC).isoformat()} {socket.gethostname()} pid {os.getpid()}"
    with contextlib.suppress(OSError):  # a failing disk must not hide the cell's error
        atomic_write_text(where, f"{stamp}\n{text}")
    return Outcome(config, FAILED, line, str(where))


def _execute(
    config: dict[str, Any], options: RunOptions, store: RunStore, index: str, spec: TableSpec
) -> Outcome:
    task = get_task(spec.task)
    protocol = task.protocol_of(config)
    here, device = distributed.setup(resolve_device(options.device))
    _use_threads(options.threads)
    claim = _claim(lease_path(store, config), device)
    if claim is None:
        holder = lease.read_holder(lease_path(store, config)) or {}
        return Outcome(config, HELD, describe_holder(holder))
    with claim:
        if not options.force and store.load(config) is not None:
            return Outcome(config, DONE, "finished by another runner", str(store.path(config)))
        if here.is_main:
            claim.start_heartbeat(store.root)
        if options.force:
            store.discard(config, keep=(lease.SUFFIX,))
        started, clock = datetime.now(UTC), time.perf_counter()
        torch.manual_seed(config["seed"])
        desc = index + describe_cell(config)
        define_from_config(config)  # from its config alone: a worker may never have seen its study
        try:
            model = task.build_model(protocol, config["variant"])
        except MissingDependency as exc:
            return Outcome(config, UNAVAILABLE, str(exc))
        data = _data(spec.task, protocol, options, device)
        measured = measured_columns(spec.task, protocol, config["variant"], spec.paper_flops,
                             tuple(data.input_shape))  # fmt: skip
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model.to(device)
        ctx = CellContext(
            store, device, desc, options, spec.save_weights, "train_time_s" in spec.columns
        )
        result, weights = task.run_cell(model, data, protocol, config, ctx)
        if here.is_main:
            claim.peak_sharing = max(claim.peak_sharing, lease.sharing(store.root, claim.holder))
        record = _record(
            config, result, weights, {**result.metrics, **measured}, data, options, device,
            contention=claim.peak_sharing, started=started, clock=clock,
        )  # fmt: skip
        if not here.is_main:  # under torchrun only rank 0 writes
            return Outcome(config, TRAINED, "", None, result.metrics)
        path = store.save(record)
        error_path(store, config).unlink(missing_ok=True)
        shown = metrics_line(task, result.metrics)
        return Outcome(config, TRAINED, shown, str(path), dict(result.metrics))


def _use_threads(asked: int | None) -> None:
    """Train with the threads asked for, else torch's own count capped by the CPU quota:
    torch reads the affinity but not a container's quota, and oversubscribing it is slow."""
    current = torch.get_num_threads()
    threads = asked or machine.torch_threads(current)
    if threads != current:
        torch.set_num_threads(threads)


def describe_cell(config: dict[str, Any]) -> str:
    """A cell as its progress bar and the run's log name it: variant, test set, noise
    level, seed."""
    block = f" on {config['test_set']}" if "test_set" in config else ""
    sigma = f" sigma {config['sigma']}" if "sigma" in config else ""
    return f"{config['variant']}{block}{sigma} seed {config['seed']}"


def _record(
    config: dict[str, Any], result: TrainResult, weights: Path | None,
    metrics: dict[str, Any], data: Any, options: RunOptions, device: torch.device, *,
    contention: int, started: datetime, clock: float,
) -> dict[str, Any]:  # fmt: skip
    """A finished cell's record: what it measured, how and where it ran, its provenance."""
    record = {
        "schema": SCHEMA,
        "status": "complete",
        "key": config_hash(config),
        "cell_key": cell_key(config),
        "config": config,
        "metrics": metrics,
        "diverged": result.diverged,
        "history": result.history,
        "weights": weights.name if weights else None,
        "epoch_times_s": result.epoch_times_s,
        "test_times_s": result.test_times_s,
        "notes": result.notes,
        "data": data.description,
        "env": environment(device),
        "runtime": options.runtime,
        "executor": options.executor,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        # most cells running at once on this host and device while this one ran
        "contention": contention,
        "timing": result.timing(),  # each phase's spread and the machine's state meanwhile
        "started_at": started.isoformat(timespec="seconds"),
        "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - clock,
        "command": options.command,
    }
    if getattr(data, "sources", None) is not None:  # a task whose data names its files
        record["data_files"] = list(data.sources)
    return record


def metrics_line(task: Task, metrics: dict[str, Any]) -> str:
    """A finished cell's log line: the metrics its task logs."""
    logged = [m.name for m in task.metrics if m.logged]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in logged if k in metrics)
