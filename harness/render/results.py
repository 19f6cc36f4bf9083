"""Results as pandas frames for notebooks, and records sent to a tracker after the fact.

``harness.results(table)`` is one row per cell the report reads (the newest record of each
current cell: the same records as the table's report), ``harness.summary(table)`` is the
report's own frame (one row per table row: the numbers, intervals and tests as reported).
``python -m harness export mlflow|tensorboard TABLE`` writes the same records to a tracker.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.core.task import get_task
from harness.render.report import Report, build_report, default_profile
from harness.render.timing import cell_timing
from harness.store.records import RunStore
from harness.store.tracking import TRACKERS, Tracking
from harness.tables.paper import TableSpec
from harness.tables.study import get_spec

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")  # a second to import: only when a frame is made


def _spec(table: str, runs_dir: Path | str) -> TableSpec:
    """A paper table by name, or a study file's path (read, never run: no size limit)."""
    return get_spec(str(table), yes=True, store=RunStore(runs_dir))


def _report(spec: TableSpec, runs_dir: Path | str, profile: str | None, **options: Any) -> Report:
    store = RunStore(runs_dir)
    return build_report(spec, profile or default_profile(spec, store), store, **options)


def results(table: str, runs_dir: Path | str = "runs", profile: str | None = None) -> pd.DataFrame:
    """One row per cell: its identity (variant, seed, sigma and test set where the table
    has them), every metric and cost, timings, device, hashes and the record's path.
    ``table``: a paper table's name or a study file's path; ``profile``: default the
    profile of the table's newest record."""
    rows = [_row(r) for r in _report(_spec(table, runs_dir), runs_dir, profile).records]
    return pd.DataFrame(rows)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    c, env = record["config"], record["env"]
    row: dict[str, Any] = {"table": c["table"], "profile": c["profile"], "row": c["row"],
                           "variant": c["variant"], "seed": c["seed"]}  # fmt: skip
    row |= {k: c[k] for k in ("sigma", "test_set") if k in c}
    row |= {k: v for k, v in record["metrics"].items() if not isinstance(v, list)}
    epochs = record.get("epoch_times_s") or []
    return row | {
        "wall_s": record["wall_s"],
        "epochs_timed": len(epochs),
        "epoch_time_s_total": sum(epochs) if epochs else None,
        "diverged": record.get("diverged"),
        "device": env.get("device"),
        "device_name": env.get("device_name"),
        "host": record.get("host"),
        "started_at": record.get("started_at"),
        "ended_at": record.get("ended_at"),
        "git_commit": env.get("git_commit"),
        "protocol_hash": record.get("cell_key"),  # the config less seed and noise level
        "config_hash": record.get("key"),
        "record": record["_path"],
        **cell_timing(record),  # train_timing, test_timing: quiet, disturbed or unknown
    }


def summary(
    table: str, runs_dir: Path | str = "runs", profile: str | None = None, select: str = "mean"
) -> pd.DataFrame:
    """The table as its report computes it: one row per table row, each column's number
    under ``select``, its std and 95% interval, tests against the baseline, the paper's
    values, and ``n_seeds``."""
    return _report(_spec(table, runs_dir), runs_dir, profile, select_rule=select).frame


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="send existing run records to TensorBoard or MLflow")
    p.add_argument("tracker", choices=TRACKERS)
    p.add_argument("tables", nargs="+", metavar="TABLE", help="a paper table or a study file")
    p.add_argument("--profile", help="default: the profile of each table's newest record")
    p.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="run records (default runs/)"
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Each table's records (those its report reads) to one tracker; exit 1 if it failed."""
    specs = [_spec(name, args.runs_dir) for name in args.tables]
    if not args.runs_dir.is_dir():
        raise UserError(f"--runs-dir {args.runs_dir} is not a folder of run records")
    tracking = Tracking(args.tracker, args.runs_dir)
    try:
        for spec in specs:
            report = _report(spec, args.runs_dir, args.profile)
            metrics = [m.name for m in get_task(spec.task).metrics]
            before = tracking.logged
            for record in report.records:
                tracking.log(record, metrics)
            print(f"{spec.name} [{report.profile}]: {tracking.logged - before} of "
                  f"{len(report.records)} cells sent to {args.tracker} ({tracking.where})")  # fmt: skip
    finally:
        tracking.close()
    return 1 if tracking.failed else 0
