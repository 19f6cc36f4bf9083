"""The batch executors: cells as submitit job arrays on SLURM (``slurm``), or as local
processes through submitit's local backend (``submitit-local``, a sweep tried on a laptop).

One array per run (per distinct resource request), one array task per cell. Each
cell asks for what the task's pricing says it needs (GPUs, CPUs, memory, and a time
limit from ``plan``'s estimate with a margin), so a denoiser cell and an MNIST cell do
not ask for the same. The run store and leases stay the authority: a cell is done when
its record is written, and SLURM's view is advice (:mod:`harness.run.jobs` keeps the
submission index and asks ``squeue``, so no accounting database is needed). Results
never travel back through submitit's pickles; the driver reads records.

A cell's job that gets SIGUSR1 (preemption, or its time limit near: SLURM sends it 90 s
before) is requeued by submitit with the same cell (:class:`CellJob` is checkpointable),
and resumes from the cell's last per-epoch checkpoint where its task writes one.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.task import RunOptions, get_task
from harness.run import jobs
from harness.run.cell import (
    DONE,
    FAILED,
    HELD,
    SUBMITTED,
    TRAINED,
    Outcome,
    execute_cell,
    metrics_line,
)
from harness.run.planning import CellState, describe_holder, plan_cells
from harness.store.records import RunStore, config_hash
from harness.tables.costs import (
    ASSUMED_THROUGHPUT,
    Plan,
    architecture,
    is_classical,
    training_shape,
)
from harness.tables.paper import TableSpec, get_table

OnOutcome = Callable[[Outcome], None]
_INSTALL = 'pip install -e ".[slurm]"'
TIME_MARGIN = 3.0  # the time limit is this many times plan's estimate ...
MIN_MINUTES = 15  # ... and never less (start-up, data loading, a slow node)
MEMORY_MARGIN = 2.0  # on top of weights, gradients, Adam's moments and the float data
BASE_MEMORY_GB = 2  # Python, torch and CUDA's context
POLL_S = 3.0
PREEMPT_SIGNAL = "USR1"
REPORT_EVERY_S = 60.0


class CellJob:
    """What one array task runs: one cell, as any executor runs it. ``checkpoint`` is
    submitit's Checkpointable protocol: on SIGUSR1 submitit resubmits this same call
    and requeues the job, and the cell resumes from its last epoch checkpoint (a forced
    run must not discard that checkpoint the second time, hence ``force=False``)."""

    def __call__(self, config: dict[str, Any], options: RunOptions) -> str:
        return execute_cell(config, options).status

    def checkpoint(self, config: dict[str, Any], options: RunOptions) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, config, replace(options, force=False))


@dataclass(frozen=True)
class Request:
    """What one cell asks of the scheduler."""

    gpus: int
    cpus: int
    mem_gb: int
    minutes: int

    def merge(self, other: Request) -> Request:
        return Request(*(max(a, b) for a, b in zip(self.__dict__.values(),
                                                    other.__dict__.values(), strict=True)))  # fmt: skip


def cell_request(
    spec: TableSpec, config: dict[str, Any], store: RunStore, *, gpus: int, cpus: int | None,
    workers: int = 1, minutes: int | None = None,
) -> Request:  # fmt: skip
    """A cell's request from the task's pricing: its training FLOPs (or classical CPU
    seconds) at plan's assumed throughput times :data:`TIME_MARGIN`, and memory for its
    weights, gradients, optimiser state and (where its task holds them) training data
    as float32. Classical methods ask for no GPU; a cell whose FLOPs are unknown (a
    plugin's op without a FLOP handle) gets the shortest limit: pass --time-limit."""
    profile, variant = config["profile"], config["variant"]
    shape = training_shape(spec, profile)
    price = Plan()
    price.price(spec, config, store, shape)
    trains = not is_classical(variant)
    gpus = gpus if trains else 0  # a classical method runs on CPU cores
    rate = ASSUMED_THROUGHPUT["cuda" if gpus else "cpu"]
    seconds = price.train_flops / rate + price.classical_s / max(1, workers)
    params = architecture(spec, profile, variant, all_columns=True).get("params", 0)
    resident = trains and get_task(spec.task).holds_data
    data_bytes = 4 * shape.n_train * math.prod(shape.shape) if resident else 0
    memory = BASE_MEMORY_GB + math.ceil(MEMORY_MARGIN * (16 * params + data_bytes) / 2**30)
    default_cpus = max(workers, 1) if price.classical_s else (4 if gpus else 1)
    return Request(
        gpus=gpus,
        cpus=cpus or default_cpus,
        mem_gb=memory,
        minutes=minutes or _round_up(max(MIN_MINUTES, math.ceil(TIME_MARGIN * seconds / 60))),
    )


def _round_up(minutes: int) -> int:
    """To a quarter hour (an hour beyond two), so that similar cells share one array."""
    step = 15 if minutes <= 120 else 60
    return -(-minutes // step) * step


def _cluster_has_gpus() -> bool:
    try:
        gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True,
                              timeout=30, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"cannot ask SLURM for its nodes (sinfo: {exc})") from None
    return "gpu" in gres


@dataclass
class SlurmExecutor:
    """Cells as submitit job arrays (see the module docstring)."""

    backend: str = jobs.SLURM
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None  # array tasks running at once (slurm_array_parallelism)
    slurm_args: dict[str, str] = field(default_factory=dict)  # sbatch options, as given
    gpus_per_cell: int = 1
    cpus_per_cell: int | None = None
    time_limit: int | None = None  # minutes; default from the cell's price
    retries: int = 0  # resubmit a failed or killed cell up to this many times
    detach: bool = False  # submit and return; `harness wait` follows
    poll_s: float = POLL_S
    _local: list[Any] = field(default_factory=list, init=False)  # local backend's jobs

    @property
    def name(self) -> str:
        return self.backend

    def run(
        self, configs: list[dict[str, Any]], options: RunOptions, done: OnOutcome,
        spec: TableSpec | None = None,
    ) -> None:  # fmt: skip
        """Submit the cells that are neither done nor held by a live job, then (unless
        detached) follow them and those already queued until each has ended."""
        spec = spec or get_table(configs[0]["table"])
        store = RunStore(options.runs_dir)
        options = _portable(options)
        submit, follow = [], []
        for cell in plan_cells(configs, store, options.force).cells:
            if cell.record is not None:
                done(Outcome(cell.config, DONE, "finished by another runner"))
            elif cell.holder is not None and cell.job_state is None:  # another kind of runner
                done(Outcome(cell.config, HELD, describe_holder(cell.holder)))
            elif cell.job_state is not None:
                follow.append(cell.config)
                done(Outcome(cell.config, SUBMITTED, "already " + jobs.describe_job(
                    cell.job or {}, cell.job_state)))  # fmt: skip
            else:
                submit.append(cell.config)
        self._submit(submit, options, spec, store, done)
        if self.detach:
            return
        resubmit = (
            (lambda c: self._submit([c], options, spec, store, done)) if self.retries else None
        )
        follow_cells(follow + submit, store, done, self.poll_s, resubmit, self.retries, _say)
        while not all(job.done() for job in self._local):  # their records are written;
            time.sleep(0.2)  # let the local processes finish exiting

    def _submit(
        self, configs: list[dict[str, Any]], options: RunOptions, spec: TableSpec,
        store: RunStore, done: OnOutcome,
    ) -> None:  # fmt: skip
        if not configs:
            return
        gpus = self.gpus_per_cell if self._gpu(options) else 0
        groups: dict[Request, list[dict[str, Any]]] = {}
        for config in configs:
            request = cell_request(spec, config, store, gpus=gpus, cpus=self.cpus_per_cell,
                                   workers=options.workers, minutes=self.time_limit)  # fmt: skip
            groups.setdefault(request, []).append(config)
        if self.max_parallel and len(groups) > 1:  # one array, so that the cap holds for all
            top = functools.reduce(Request.merge, groups)
            groups = {top: [c for cells in groups.values() for c in cells]}
        for request, cells in groups.items():
            cell_options = replace(options, device="cuda" if request.gpus else "cpu",
                                   threads=request.cpus, executor=self.name)  # fmt: skip
            executor = self._executor(store, request, spec.name)
            try:
                submitted = executor.map_array(CellJob(), cells, [cell_options] * len(cells))
            except Exception as exc:  # sbatch refused: the request, a partition, an account
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise UserError(f"SLURM refused the job array: {line}") from None
            if self.backend == jobs.LOCAL:
                self._local += submitted
            now = time.time()
            entries = [{
                "key": config_hash(c), "table": c["table"], "profile": c["profile"],
                "config": c, "backend": self.backend, "job": str(j.job_id),
                "log": str(j.paths.stdout), "err": str(j.paths.stderr), "submitted_at": now,
                "request": request.__dict__,
            } for c, j in zip(cells, submitted, strict=True)]  # fmt: skip
            jobs.record_submissions(store.root, entries)
            for entry in entries:
                done(Outcome(entry["config"], SUBMITTED, jobs.describe_job(entry, None)))

    def _gpu(self, options: RunOptions) -> bool:
        if options.device != "auto":
            return options.device.startswith("cuda")
        if self.backend == jobs.LOCAL:
            import torch

            return torch.cuda.is_available()
        return _cluster_has_gpus()

    def _executor(self, store: RunStore, request: Request, table: str) -> Any:
        try:
            import submitit
        except ImportError:
            raise UserError(f"--executor {self.backend} needs submitit: {_INSTALL}") from None
        folder = store.root / jobs.LOGS
        if self.backend == jobs.LOCAL:
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=request.minutes, gpus_per_node=request.gpus)
            return executor
        executor = submitit.SlurmExecutor(folder=folder, python=sys.executable)
        params: dict[str, Any] = {
            "job_name": f"harness-{table}", "time": request.minutes,
            "cpus_per_task": request.cpus, "mem": f"{request.mem_gb}G",
            "array_parallelism": self.max_parallel or 256,
            # SIGUSR1 90 s before the time limit (and from a preempting scheduler) asks
            # the job to requeue itself; submitit's default would be SIGUSR2
            "setup": [f"export SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}"],
            "additional_parameters": {"signal": f"{PREEMPT_SIGNAL}@90", **self.slurm_args},
        }  # fmt: skip
        if request.gpus:
            params["gpus_per_node"] = request.gpus
        for key in ("partition", "account", "qos"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        executor.update_parameters(**params)
        return executor

    def shutdown(self) -> None:
        """Local jobs are this process's children: stop those still running. SLURM jobs
        are the cluster's: they go on, and `harness wait` or a rerun follows them."""
        for job in self._local:
            if not job.done():
                job.cancel(check=False)
        self._local.clear()


def _say(line: str) -> None:
    print(line, flush=True)


def _portable(options: RunOptions) -> RunOptions:
    """Paths made absolute: a job may start in another folder."""
    absolute = {k: Path(v).absolute() for k in ("data_root", "runs_dir", "test_dir",
                "denoiser_weights") if (v := getattr(options, k)) is not None}  # fmt: skip
    return replace(options, **absolute)


def follow_cells(
    configs: list[dict[str, Any]], store: RunStore, done: OnOutcome, poll_s: float = POLL_S,
    resubmit: Callable[[dict[str, Any]], None] | None = None, retries: int = 0,
    log: Callable[[str], None] = print,
) -> None:  # fmt: skip
    """Wait until every cell in ``configs`` has a record (trained), a failure of its
    newest job (failed), or a job that ended without either (killed; failed too);
    ``resubmit`` gets a failed or killed cell again while it has retries left."""
    remaining = {config_hash(c): c for c in configs}
    attempts = dict.fromkeys(remaining, 0)
    last_report = time.monotonic()
    while remaining:
        plan = plan_cells(list(remaining.values()), store)
        for cell in plan.cells:
            outcome = _ended(cell, store)
            if outcome is None:
                continue
            key = config_hash(cell.config)
            if outcome.status == FAILED and resubmit is not None and attempts[key] < retries:
                attempts[key] += 1
                done(Outcome(cell.config, SUBMITTED, f"retry {attempts[key]} of {retries} "
                             f"after: {outcome.message}"))  # fmt: skip
                resubmit(cell.config)
                continue
            remaining.pop(key)
            done(outcome)
        if remaining and time.monotonic() - last_report > REPORT_EVERY_S:
            labels = [c.label for c in plan.cells if config_hash(c.config) in remaining]
            counts = ", ".join(f"{labels.count(x)} {x}" for x in sorted(set(labels)))
            log(f"  waiting for {len(remaining)} cells: {counts}")
            last_report = time.monotonic()
        if remaining:
            time.sleep(poll_s)


def _ended(cell: CellState, store: RunStore) -> Outcome | None:
    """The cell's outcome once its job has ended; None while it is queued or running."""
    config = cell.config
    if cell.record is not None:
        task = get_task(get_table(config["table"]).task)
        line = metrics_line(task, cell.record["metrics"])
        return Outcome(config, TRAINED, line, str(store.path(config)), cell.record["metrics"])
    if cell.label in ("queued", "running"):
        return None
    if cell.job_died or cell.job is None:
        job = cell.job or {}
        last = jobs.last_log_line(job) if job else "no job"
        return Outcome(config, FAILED, f"{jobs.describe_job(job, None) if job else 'its job'} "
                       f"ended without a record; its log's last line: {last}")  # fmt: skip
    text = cell.failed.read_text().strip().splitlines() if cell.failed else []
    return Outcome(config, FAILED, text[-1] if text else "failed", str(cell.failed))


def wait_for_submitted(
    table: str,
    profile: str,
    store: RunStore,
    done: OnOutcome,
    log: Callable[[str], None],
    poll_s: float = POLL_S,
) -> int:
    """Follow this table's submitted cells that have no record yet; how many there were."""
    entries = [e for e in jobs.submissions(store.root).values()
               if e.get("table") == table and e.get("profile") == profile
               and isinstance(e.get("config"), dict)]  # fmt: skip
    open_cells = [e["config"] for e in entries if store.load(e["config"]) is None]
    follow_cells(open_cells, store, done, poll_s, log=log)
    return len(open_cells)


def make_batch_executor(
    backend: str, *, gpus_per_cell: float, cpus_per_cell: float | None, retries: int,
    partition: str | None = None, account: str | None = None, qos: str | None = None,
    max_parallel: int | None = None, slurm_args: list[str] | None = None,
    time_limit: int | None = None, detach: bool = False,
) -> SlurmExecutor:  # fmt: skip
    """The executor, every option checked in one line before anything is submitted."""
    if backend == jobs.LOCAL:
        given = {"--partition": partition, "--account": account, "--qos": qos,
                 "--max-parallel": max_parallel, "--slurm-arg": slurm_args,
                 "--detach": detach or None}  # fmt: skip
        for option, value in given.items():
            if value:
                raise UserError(f"{option} needs --executor slurm (the local backend "
                                "runs every cell at once, here)")  # fmt: skip
    if gpus_per_cell != int(gpus_per_cell) or not 1 <= gpus_per_cell <= 8:
        raise UserError(f"--gpus-per-cell must be a whole number 1 to 8 with --executor "
                        f"{backend}, got {gpus_per_cell}")  # fmt: skip
    if cpus_per_cell is not None and (cpus_per_cell != int(cpus_per_cell) or cpus_per_cell < 1):
        raise UserError(f"--cpus-per-cell must be a positive whole number, got {cpus_per_cell}")
    if max_parallel is not None and not 1 <= max_parallel <= 100_000:
        raise UserError(f"--max-parallel must be 1 to 100000, got {max_parallel}")
    if time_limit is not None and not 1 <= time_limit <= 525_600:
        raise UserError(f"--time-limit must be 1 to 525600 minutes, got {time_limit}")
    if not 0 <= retries <= 100:
        raise UserError(f"--retries must be between 0 and 100, got {retries}")
    pairs = {}
    for item in slurm_args or ():
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or any(c.isspace() for c in key):
            raise UserError(f"--slurm-arg takes KEY=VALUE (an sbatch option), got {item!r}")
        pairs[key] = value
    return SlurmExecutor(
        backend, partition, account, qos, max_parallel, pairs, int(gpus_per_cell),
        None if cpus_per_cell is None else int(cpus_per_cell), time_limit, retries, detach,
    )  # fmt: skip
