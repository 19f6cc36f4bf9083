"""Tracker export: a finished cell's record, written to TensorBoard or MLflow.

Everything comes from the record (engines know nothing of trackers), so a cell logged as
it finishes (``run --track``) and one exported later (``harness export``) look the same:

- per-step scalars: every number in each entry of the record's ``history`` (the loss,
  the test metrics the engine logged, the learning rate, ...), at the entry's ``step``;
  ``epoch_time_s`` at the epoch's number (1, 2, ...);
- the cell's hyper-parameters: its config flattened (``protocol.lr``, ``seed``, ...);
- its final metrics, under ``final/<name>``, for the metrics its task declares.

TensorBoard: one run per cell, ``<runs>/_tensorboard/<table>/<profile>/<cell>/seed<k>``
(re-exporting a cell replaces its event files). MLflow: one run per cell, nested under
one parent run per table and profile, in experiment ``feature-pooling-harness``; the
tracking URI is ``MLFLOW_TRACKING_URI`` if set, else the file store ``./mlruns``.

A tracker that fails (not reachable, disk full) is warned about once and then left
alone: the run goes on and its records are the authority.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.store.records import warn

TRACKERS = ("tensorboard", "mlflow")
EXPERIMENT = "feature-pooling-harness"
TENSORBOARD_DIR = "_tensorboard"
INSTALL = "pip install 'feature-pooling-harness[track]'"
# the module each tracker needs, and the package that provides it
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}
_AXES = ("step", "epoch")  # history keys that place an entry, not quantities to plot


def check_installed(kind: str) -> None:
    """Refuse, in one line, a tracker whose package is missing (before anything runs)."""
    if kind not in TRACKERS:
        raise UserError(f"unknown tracker {kind!r}; choose one of: {', '.join(TRACKERS)}")
    module, package = _NEEDS[kind]
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"--track {kind} needs the {package} package, which is not installed: {INSTALL} "
            f"(or pip install {package})"
        )


def cell_name(record: dict[str, Any]) -> str:
    """``<table>/<profile>/<variant>[-sigma<s>][-<test set>]/seed<k>``: one per cell."""
    c = record["config"]
    cell = c["variant"] + (f"-sigma{c['sigma']}" if "sigma" in c else "")
    cell += f"-{c['test_set']}" if "test_set" in c else ""
    return f"{c['table']}/{c['profile']}/{cell}/seed{c['seed']}"


def scalars(record: dict[str, Any]) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every finite number in the history, and each epoch's time."""
    out = []
    for i, entry in enumerate(record.get("history") or []):
        step = int(entry.get("step", i + 1))
        out += [(k, step, float(v)) for k, v in entry.items() if k != "step" and _number(v)]
    times = record.get("epoch_times_s") or []
    out += [("epoch_time_s", epoch, float(t)) for epoch, t in enumerate(times, 1) if _number(t)]
    return out


def final_metrics(record: dict[str, Any], metrics: Iterable[str]) -> dict[str, float]:
    """``final/<name>``: the record's value of each metric its task declares."""
    declared = set(metrics)
    return {
        f"final/{k}": float(v) for k, v in record["metrics"].items() if k in declared and _number(v)
    }


def hyperparameters(record: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The config flattened to ``a.b`` keys; lists as their JSON-ish text."""
    out: dict[str, bool | int | float | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "__type__":
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool | int | float | str):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    walk("", record["config"])
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardWriter:
    """Event files under ``<runs>/_tensorboard``, one folder (run) per cell."""

    def __init__(self, runs_dir: Path) -> None:
        self.root = Path(runs_dir) / TENSORBOARD_DIR
        self.where = str(self.root)

    def log_cell(self, record: dict[str, Any], metrics: Sequence[str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / cell_name(record)
        for old in folder.glob("events.out.tfevents.*"):  # a re-export replaces the cell's run
            old.unlink()
        with SummaryWriter(str(folder)) as writer:
            for tag, step, value in scalars(record):
                writer.add_scalar(tag, value, step)
            # run_name ".": the hparams go into the cell's own run, not a new one
            writer.add_hparams(
                hyperparameters(record), final_metrics(record, metrics), run_name="."
            )

    def close(self) -> None:
        """Each cell's writer is closed when it is written."""


class MLflowWriter:
    """One MLflow run per cell, under a parent run per table and profile."""

    def __init__(self) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
        if uri.startswith("file:"):  # MLflow 3 asks for an opt-in to its file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # an unreachable server fails fast (once) instead of retrying for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.client = MlflowClient(tracking_uri=uri)
        self.where = uri
        self.parents: dict[tuple[str, str], str] = {}
        self.experiment: str | None = None

    def _parent(self, config: dict[str, Any]) -> str:
        key = (config["table"], config["profile"])
        if key not in self.parents:
            if self.experiment is None:
                found = self.client.get_experiment_by_name(EXPERIMENT)
                self.experiment = (
                    found.experiment_id if found else self.client.create_experiment(EXPERIMENT)
                )
            run = self.client.create_run(
                self.experiment, run_name=f"{key[0]} [{key[1]}]",
                tags={"harness.table": key[0], "harness.profile": key[1]},
            )  # fmt: skip
            self.parents[key] = run.info.run_id
        return self.parents[key]

    def log_cell(self, record: dict[str, Any], metrics: Sequence[str]) -> None:
        from mlflow.entities import Metric, Param

        parent = self._parent(record["config"])
        tags = {"mlflow.parentRunId": parent, "harness.cell_key": record.get("cell_key", ""),
                "harness.record": record.get("_path", "")}  # fmt: skip
        run = self.client.create_run(self.experiment, run_name=cell_name(record), tags=tags)
        now = int(time.time() * 1000)
        points = [Metric(tag, value, now, step) for tag, step, value in scalars(record)]
        points += [Metric(k, v, now, 0) for k, v in final_metrics(record, metrics).items()]
        params = [Param(k, str(v)) for k, v in hyperparameters(record).items()]
        run_id = run.info.run_id
        for i in range(0, max(len(points), len(params)), 100):  # MLflow's batch limits
            self.client.log_batch(run_id, metrics=points[i : i + 100], params=params[i : i + 100])
        self.client.set_terminated(run_id)

    def close(self) -> None:
        for run_id in self.parents.values():
            self.client.set_terminated(run_id)
        self.parents.clear()


class Tracking:
    """The hook the runner and ``export`` call: writes each record to one tracker, and
    after its first failure warns once and writes nothing more."""

    def __init__(self, kind: str, runs_dir: Path) -> None:
        check_installed(kind)
        self.kind, self.logged = kind, 0
        self.writer: TensorBoardWriter | MLflowWriter | None = None
        self.where = "its tracking URI" if kind == "mlflow" else str(runs_dir)
        try:
            self.writer = TensorBoardWriter(runs_dir) if kind == "tensorboard" else MLflowWriter()
        except Exception as exc:  # a tracker's failure is never the run's
            self._fail(exc)
        else:
            self.where = self.writer.where

    @property
    def failed(self) -> bool:
        return self.writer is None

    def log(self, record: dict[str, Any], metrics: Sequence[str]) -> None:
        if self.writer is None:
            return
        try:
            self.writer.log_cell(record, metrics)
        except Exception as exc:
            self._fail(exc)
        else:
            self.logged += 1

    def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.writer = None
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warn(f"--track {self.kind} failed ({type(exc).__name__}: {line[:300]}); "
             "nothing more is sent to it this run, the records are unaffected "
             "(`python -m harness export` can send them later)")  # fmt: skip
