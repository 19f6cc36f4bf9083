"""Executors: where cells run. ``local`` runs them one after another in this process;
``ray`` runs one Ray task per cell on a local Ray instance or a cluster (the batch
executors, ``slurm`` and ``submitit-local``, are :mod:`harness.run.slurm`;
:func:`harness.run.runner.make_executor` picks one).

Both take a list of cell configs and call back with each cell's :class:`Outcome` as it
finishes. Neither knows what a cell does (:func:`harness.run.cell.execute_cell` does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.plugins import PluginError, load_plugins
from harness.core.task import RunOptions, tasks
from harness.run.cell import FAILED, REFUSED, Outcome, execute_cell
from harness.tables.paper import TABLES, TableSpec

OnOutcome = Callable[[Outcome], None]
_RAY_INSTALL = 'pip install -e ".[ray]"'


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
    """The body of a Ray task: one cell, then the worker's pools are kept for the next.
    ``spec``: a study's (a worker cannot look it up by name), None for a paper table."""
    from harness.run.cell import execute_cell  # imported in the worker

    if spec is not None and spec.plugins:  # where the study found them, if this host sees it
        with contextlib.suppress(PluginError):  # else execute_cell fails the cell, naming both
            load_plugins(spec.plugins, search_paths=[Path(p) for p in spec.plugin_paths])
    try:
        return execute_cell(config, options, spec=spec)
    except UserError as exc:  # a bad option or a full disk: the driver stops with one line
        return Outcome(config, REFUSED, str(exc))


@dataclass
class RayExecutor:
    """One Ray task per cell. Without an address (and without ``RAY_ADDRESS``) it starts
    a local Ray instance for this run: no dashboard, no usage stats, a small object
    store (only configs and outcomes travel through it)."""

    address: str | None = None
    gpus_per_cell: float = 1.0
    cpus_per_cell: float | None = None  # default: 1 on the CPU, 4 per GPU cell
    retries: int = 2  # a worker that dies mid-cell is restarted this many times
    name: str = "ray"
    _started: bool = field(default=False, init=False)  # this run started the instance

    def _ray(self) -> Any:
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
                kwargs |= {"num_cpus": os.cpu_count(), "object_store_memory": 256 * 2**20}
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError) as exc:
                raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._started = True
        return ray

    def _resources(self, options: RunOptions) -> dict[str, float]:
        cuda = options.device.startswith("cuda")
        cpus = self.cpus_per_cell or (4.0 if cuda else 1.0)
        return {"num_cpus": cpus, "num_gpus": self.gpus_per_cell if cuda else 0}

    def run(
        self, configs: list[dict[str, Any]], options: RunOptions, done: OnOutcome,
        spec: TableSpec | None = None,
    ) -> None:  # fmt: skip
        """Cells in Ray workers, which find a paper table by name; a study's spec is sent
        with each cell (its rows' models are defined by the cells' configs)."""
        ray = self._ray()
        resources = self._resources(options)
        if options.device == "auto":  # decide here, where the cluster's GPUs are known
            gpus = ray.cluster_resources().get("GPU", 0)
            options = replace(options, device="cuda" if gpus else "cpu")
            resources = self._resources(options)
        # the cell's torch threads are its CPUs, a stated choice (Ray would set 1 silently)
        options = replace(options, threads=max(1, int(resources["num_cpus"])), executor="ray")
        remote = ray.remote(_cell_task).options(max_retries=self.retries, **resources)
        shipped = None if spec is None or TABLES.get(spec.name) is spec else ray.put(spec)
        pending = {remote.remote(config, options, shipped): config for config in configs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    config = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died, retries spent
                        line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                        outcome = Outcome(config, FAILED, f"{type(exc).__name__}: {line}")
                    if outcome.status == REFUSED:
                        raise UserError(outcome.message)
                    done(outcome)
        except (KeyboardInterrupt, UserError):
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
