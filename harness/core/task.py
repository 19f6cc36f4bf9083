"""Tasks: what a cell of one kind of table does, behind one interface.

The runner, the planner and the executors name no task. A table spec names its task
(``TableSpec.task``); :func:`get_task` returns the plugin, which opens the table's data
once per process and runs one cell on it. Tasks are found through the entry points of
group ``harness.tasks`` (each names a :class:`Task` instance; the built-in ones are
declared in ``pyproject.toml``), so an installed package adds a task without editing
the harness; a module imported as a plugin may call :func:`register_task` instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.metrics import COST_CONVENTIONS, COSTS, Metric
from harness.core.protocol import Protocol
from harness.core.runtime import Runtime
from registry import create_model, list_variants, variant_info

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.store.records import RunStore
    from harness.train.loop import TrainResult


@dataclass(frozen=True)
class RunOptions:
    """How to run cells, as opposed to what a cell computes (its config): enough for any
    process on any machine that sees the same files to run a cell."""

    data_root: Path = Path("data")
    runs_dir: Path = Path("runs")
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto", resolved where the cell runs
    runtime: Runtime = Runtime()
    download: bool = True
    force: bool = False
    # when the run began (time.time()): under force, a model another cell trained since
    # then is reused, so cells that share one model retrain it once per run, not each;
    # left out of equality, so per-process caches keyed on the options outlive one run
    started: float = field(default_factory=time.time, compare=False)
    test_dir: Path | None = None
    denoiser_weights: Path | None = None
    workers: int = 1  # processes for classical denoisers
    threads: int | None = None  # torch threads per cell (None: torch's default)
    executor: str = "local"
    # the command line that started the run, for each record's provenance
    command: str = field(default="", compare=False)


@dataclass(frozen=True)
class CellContext:
    """What a task's ``run_cell`` may use besides the model, data and config."""

    store: RunStore
    device: torch.device
    desc: str
    options: RunOptions
    save_weights: bool
    # the table shows training time: a model reused from another table is timed anew here
    times_training: bool = False


@dataclass(frozen=True)
class TrainingShape:
    """One training image's shape, how many images an epoch sees, and a line naming them."""

    shape: tuple[int, ...]
    n_train: int
    summary: str


class Task:
    """One kind of cell. Subclasses override what differs; the defaults suit most."""

    name = ""
    protocol_type: type[Protocol] = Protocol  # the task's protocol, with its own fields
    accepts_test_dir = False  # --test-dir replaces the test set
    accepts_denoiser_weights = False  # --denoiser-weights feeds the task's denoiser
    distributed = False  # may run as several torchrun processes
    # its training data sits in memory for the whole cell (a batch job asks for it);
    # False for data streamed from disk
    holds_data = True
    # what a cell measures, in the order its log line shows them (harness.core.metrics)
    metrics: tuple[Metric, ...] = COSTS
    # the report's conventions lines, each with the metrics it defines, in report order
    conventions: tuple[tuple[str, tuple[str, ...]], ...] = COST_CONVENTIONS
    notes_label = "Notes on the runs"  # the report's header line of per-run notes

    def protocol_line(self, profile: str, protocol: dict[str, Any]) -> str:
        """The report's one line on how cells trained (``protocol``: the config's)."""
        p = protocol
        return (
            f"Protocol (`{profile}`): {_plural(p['epochs'], 'epoch')}, batch {p['batch_size']}, "
            f"{p['optimizer']} lr {p['lr']:g}. {p['choices']}"
        )

    def training_shape(self, protocol: Protocol) -> TrainingShape:
        """The input a protocol trains on (what FLOPs are counted for), without loading data."""
        raise NotImplementedError

    def test_images(self, protocol: Protocol, test_set: str) -> tuple[int, int]:
        """(images, pixels per image) a cell tests on, as far as known unread (pricing)."""
        raise NotImplementedError

    def shared_training_key(
        self, config: dict[str, Any], protocol: Protocol, train_data: str
    ) -> str | None:
        """A key shared by cells that reuse one trained model (None: each cell trains)."""
        return None

    def test_side(self, protocol: Protocol) -> int:
        """The smallest side a --test-dir image needs for this protocol."""
        return 0

    def protocol_of(self, config: dict[str, Any]) -> Protocol:
        """The protocol a cell's config holds (the one its hash covers), rebuilt."""
        names = {f.name for f in fields(self.protocol_type)}
        return self.protocol_type(
            **{k: _tupled(v) for k, v in config["protocol"].items() if k in names}
        )

    def blocks(self, protocol: Protocol, test_dir: Path | None) -> tuple[str | None, ...]:
        """The test sets a table repeats its rows for; ``(None,)`` for one."""
        return (None,)

    def extra_config(self, protocol: Protocol, options: RunOptions) -> dict[str, Any]:
        """Config entries the run options add to every cell (they change its result)."""
        return {}

    def check(self, protocol: Protocol, options: RunOptions) -> None:
        """Refuse bad options in one line before any data is read or cell is run."""

    def build_model(self, protocol: Protocol, variant: str) -> nn.Module:
        """A row's model as the protocol asks for it (a narrower width, say)."""
        arch = variant_info(variant).arch if variant in list_variants() else variant
        return create_model(variant, **protocol.kwargs_for(arch))

    def open_data(self, protocol: Protocol, options: RunOptions, device: torch.device) -> Any:
        """The table's data (with ``description`` and ``input_shape``), opened once per
        process and reused by every cell of the table that runs there."""
        raise NotImplementedError

    def run_cell(
        self, model: nn.Module, data: Any, protocol: Protocol, config: dict[str, Any],
        ctx: CellContext,
    ) -> tuple[TrainResult, Path | None]:  # fmt: skip
        """Train and test one cell; its result and the weights file it saved, if any."""
        raise NotImplementedError

    def close(self, interrupted: bool) -> None:
        """Stop anything this process started for the task's cells (worker pools)."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def dataset_shape(info: Any, protocol: Protocol) -> TrainingShape:
    """The training shape of a catalogued dataset (``shape``, ``train_size``, ``summary``)."""
    n_train = min(info.train_size, protocol.train_limit or info.train_size)
    return TrainingShape(info.shape, n_train, info.summary)


def _tupled(value: Any) -> Any:
    """JSON lists back into the tuples protocols hold."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


_TASKS: dict[str, Task] = {}
ENTRY_POINTS = "harness.tasks"


def register_task(task: Task) -> Task:
    """Make ``task`` available by its name (a plugin module's alternative to an entry point)."""
    known = _TASKS.get(task.name)
    if known is not None and known is not task:
        raise ValueError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task
    return task


@functools.lru_cache(maxsize=4)
def _installed(path: tuple[str, ...]) -> tuple[importlib.metadata.EntryPoint, ...]:
    """The task entry points of the distributions on ``path``: read once per search path
    (reading every installed distribution's metadata takes about 0.05 s, and reports
    ask for tasks once per row and column)."""
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINTS))


def tasks() -> Mapping[str, Task]:
    """Every task: those registered in this process and those installed as entry points."""
    for entry in _installed(tuple(sys.path)):
        if entry.name not in _TASKS:
            task = entry.load()
            if not isinstance(task, Task) or task.name != entry.name:
                raise ValueError(f"entry point {entry.value!r} is not a Task named {entry.name!r}")
            register_task(task)
    return _TASKS


def get_task(name: str) -> Task:
    found = tasks().get(name)
    if found is None:
        raise UserError(f"unknown task {name!r}; registered: {', '.join(_TASKS)}")
    return found
