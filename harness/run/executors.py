"""Executors: where cells run. ``local`` runs them one after another in this process;
``ray`` runs them on a pool of long-lived Ray workers, each taking cell after cell, on a
local Ray instance or a cluster (the batch
executors, ``slurm`` and ``submitit-local``, are :mod:`harness.run.slurm`;
:func:`harness.run.runner.make_executor` picks one).

Both take a list of cell configs and call back with each cell's :class:`Outcome` as it
finishes. Neither knows what a cell does (:func:`harness.run.cell.execute_cell` does).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core import machine
from harness.core.errors import UserError
from harness.core.plugins import PluginError, load_plugins
from harness.core.task import RunOptions, tasks
from harness.run.cell import FAILED, REFUSED, Outcome, execute_cell
from harness.tables.paper import TABLES, TableSpec

OnOutcome = Callable[[Outcome], None]
_RAY_INSTALL = 'pip install -e ".[ray]"'
# `ray start` turns token authentication on by default (Ray 2.60 does), and a driver that
# does not say it uses tokens fails to connect with no word about them
_AUTH_HINT = (
    "; a cluster started with `ray start` may use token authentication: set "
    "RAY_AUTH_MODE=token here (the token is read from ~/.ray/auth_token or RAY_AUTH_TOKEN)"
)


class LocalExecutor:
    """Cells one at a time in this process; data stays loaded between them."""

    name = "local"

    def run(
        self, configs: list[dict[str, Any]], options: RunOptions, done: OnOutcome,
        spec: TableSpec | None = None,
    ) -> None:  # fmt: skip
        interrupted = True
        try:
            for i, config in enumerate(configs, 1):
                done(execute_cell(config, options, f"[{i}/{len(configs)}] ", spec))
            interrupted = False
        finally:
            for task in tasks().values():
                task.close(interrupted)

    def shutdown(self) -> None:
        """Nothing to stop: the cells ran here."""


def _cell_task(config: dict[str, Any], options: RunOptions, spec: TableSpec | None) -> Outcome:
    """One cell in a Ray worker, whose imports, plugins and opened data stay for the next.
    ``spec``: a study's (a worker cannot look it up by name), None for a paper table."""
    if spec is not None and spec.plugins:  # where the study found them, if this host sees it
        with contextlib.suppress(PluginError):  # else execute_cell fails the cell, naming both
            load_plugins(spec.plugins, search_paths=[Path(p) for p in spec.plugin_paths])
    try:
        return execute_cell(config, options, spec=spec)
    except UserError as exc:  # a bad option or a full disk: the driver stops with one line
        return Outcome(config, REFUSED, str(exc))


class CellWorker:
    """A Ray actor: one long-lived process that runs cell after cell, so that a cell pays
    for no process start, no imports and no opening of its table's data (the process's
    cache in :mod:`harness.run.cell` keeps it). Leases and records stay the authority: a
    worker killed mid-cell leaves a lease whose holder is dead, taken over by its rerun."""

    def pid(self) -> int:
        return os.getpid()

    def run(self, config: dict[str, Any], options: RunOptions, spec: TableSpec | None) -> Outcome:
        try:
            return _cell_task(config, options, spec)
        finally:
            if options.device.startswith("cuda"):  # the next cell may share the device
                import torch

                torch.cuda.empty_cache()


@dataclass
class _Pool:
    """The executor's workers, kept between tables of one run (and their resources)."""

    resources: dict[str, float]
    cluster: str  # the Ray session they belong to
    idle: list[Any] = field(default_factory=list)


@dataclass
class RayExecutor:
    """Cells on a pool of long-lived Ray actors (:class:`CellWorker`), as many as the
    cluster's resources fit, each taking one cell at a time. Without an address (and
    without ``RAY_ADDRESS``) it starts a local Ray instance for this run: no dashboard, no
    usage stats, a small object store (only configs, a study's spec and outcomes travel
    through it). The workers stay, holding their resources, until :meth:`shutdown`."""

    address: str | None = None
    gpus_per_cell: float = 1.0
    cpus_per_cell: float | None = None  # default: 1 on the CPU, 4 per GPU cell
    retries: int = 2  # a cell whose worker dies mid-cell is rerun this many times
    name: str = "ray"
    # the thread that started this run's own Ray instance; None: it started none
    _starter: int | None = field(default=None, init=False)
    _pool: _Pool | None = field(default=None, init=False)

    def connect(self) -> Any:
        """Ray, started or reached now (the first ``run`` does it otherwise)."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise UserError(f"--executor ray needs Ray: {_RAY_INSTALL}") from None
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "configure_logging": False,
                "log_to_driver": True,
            }
            if address is None:
                # the cores it may use, within its CPU quota (not the node's: a SLURM job
                # or a container sees them all in os.cpu_count())
                kwargs |= {"num_cpus": machine.cpu_budget(), "object_store_memory": 256 * 2**20}
            else:
                _check_reachable(address)
            try:  # "local": a new instance even where `ray start` left one running
                ray.init(address=address or "local", **kwargs)
            except (ConnectionError, RuntimeError) as exc:
                if address is None:
                    raise UserError(f"cannot start a local Ray instance: {exc}") from None
                hint = "" if "RAY_AUTH_MODE" in os.environ else _AUTH_HINT
                raise UserError(f"cannot reach the Ray cluster at {address}: {exc}{hint}") from None
            self._starter = threading.get_ident()
        return ray

    def _resources(self, options: RunOptions) -> dict[str, float]:
        cuda = options.device.startswith("cuda")
        cpus = self.cpus_per_cell or (4.0 if cuda else 1.0)
        return {"num_cpus": cpus, "num_gpus": self.gpus_per_cell if cuda else 0}

    def _slots(self, ray: Any, resources: dict[str, float]) -> int:
        """How many cells the cluster runs at once; refuses a cell it cannot fit."""
        have = ray.cluster_resources()
        fits = [int(have.get("CPU", 0) / resources["num_cpus"] + 1e-9)]  # 2 / 0.2 is 10
        if resources["num_gpus"]:
            fits.append(int(have.get("GPU", 0) / resources["num_gpus"] + 1e-9))
        if min(fits) < 1:
            raise UserError(
                f"a cell asks for {resources['num_cpus']:g} CPUs and {resources['num_gpus']:g} "
                f"GPUs; the Ray cluster has {have.get('CPU', 0):g} and {have.get('GPU', 0):g} "
                "(see --cpus-per-cell, --gpus-per-cell)"
            )
        return min(fits)

    def _workers(self, ray: Any, resources: dict[str, float], wanted: int) -> list[Any]:
        """The pool's idle workers, at least ``wanted`` of them (a pool from another
        session or with other resources is dropped first)."""
        cluster = ray.get_runtime_context().gcs_address
        if self._pool is not None and self._pool.cluster != cluster:
            self._pool = None  # its workers went with their Ray session
        if self._pool is not None and self._pool.resources != resources:
            self._kill_pool()
        pool = self._pool = self._pool or _Pool(resources, cluster)
        while len(pool.idle) < wanted:
            pool.idle.append(self._new_worker(ray, resources))
        return pool.idle

    @staticmethod
    def _new_worker(ray: Any, resources: dict[str, float]) -> Any:
        return ray.remote(CellWorker).options(max_restarts=0, **resources).remote()

    def run(
        self, configs: list[dict[str, Any]], options: RunOptions, done: OnOutcome,
        spec: TableSpec | None = None,
    ) -> None:  # fmt: skip
        """Cells on the pool's workers, which find a paper table by name; a study's spec
        is put in the object store once (its rows' models are defined by the configs)."""
        ray = self.connect()
        if options.device == "auto":  # decide here, where the cluster's GPUs are known
            gpus = ray.cluster_resources().get("GPU", 0)
            options = replace(options, device="cuda" if gpus else "cpu")
        resources = self._resources(options)
        # the cell's torch threads are its CPUs, a stated choice (Ray would set 1 silently)
        options = replace(options, threads=max(1, int(resources["num_cpus"])), executor="ray")
        idle = self._workers(ray, resources, min(self._slots(ray, resources), len(configs)))
        shipped = None if spec is None or TABLES.get(spec.name) is spec else ray.put(spec)
        queue, reruns = list(reversed(configs)), Counter[int]()
        busy: dict[Any, tuple[Any, dict[str, Any]]] = {}  # call -> (worker, its cell)
        try:
            while queue or busy:
                while queue and idle:
                    worker, config = idle.pop(), queue.pop()
                    busy[worker.run.remote(config, options, shipped)] = (worker, config)
                (ref,), _ = ray.wait(list(busy), num_returns=1)
                worker, config = busy.pop(ref)
                try:
                    outcome = ray.get(ref)
                    idle.append(worker)
                except ray.exceptions.RayActorError as exc:  # killed, out of memory, lost
                    idle.append(self._new_worker(ray, resources))
                    reruns[id(config)] += 1
                    if reruns[id(config)] <= self.retries:
                        queue.append(config)  # its lease's holder is dead: taken over
                        continue
                    outcome = Outcome(config, FAILED, _error_line(exc))
                except ray.exceptions.RayError as exc:  # the call itself failed, not the worker
                    idle.append(worker)
                    outcome = Outcome(config, FAILED, _error_line(exc))
                if outcome.status == REFUSED:
                    raise UserError(outcome.message)
                done(outcome)
        except (KeyboardInterrupt, UserError):
            for worker, _ in busy.values():  # mid-cell: their leases go stale with them
                ray.kill(worker, no_restart=True)
            raise

    def _kill_pool(self) -> None:
        if self._pool is not None:
            import ray

            if ray.is_initialized():
                for worker in self._pool.idle:
                    ray.kill(worker, no_restart=True)
            self._pool = None

    def shutdown(self) -> None:
        """Stop the workers, and the Ray instance if this run started it. On the calling
        (main) thread: Ray's driver must be shut down where it was started, and a stop on
        another thread while the main one went on crashed the process (SIGSEGV in CI)."""
        if self._starter not in (None, threading.get_ident()):  # else a crash, at random
            raise RuntimeError("RayExecutor.shutdown must run on the thread that started Ray")
        self._kill_pool()
        if self._starter is not None:
            import ray

            ray.shutdown()
            self._starter = None


_CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` nothing answers at, in seconds: Ray itself retries such an
    address for minutes before it gives up. ``auto`` and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), _CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot reach the Ray cluster at {address}: nothing answered within "
            f"{_CONNECT_TIMEOUT_S:g} s ({reason}); start it with `ray start --head` or check "
            "--address"
        ) from None


def _error_line(exc: Exception) -> str:
    """An exception as one line: its type and the last line of its text."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}"
