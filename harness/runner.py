"""Turns a table spec into cells (row x seed), runs the missing ones, stores records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from registry import create_model, variant_info

from .data import DATASETS, load_classification
from .errors import UserError
from .measure import count_flops, count_params, paper_convention
from .store import SCHEMA, RunStore, config_hash, environment, jsonable
from .tables import TableSpec
from .train import Runtime, train_classifier


def cell_config(spec: TableSpec, variant: str, profile: str, seed: int) -> dict[str, Any]:
    """Everything that determines a cell's result; its hash names the record."""
    info = variant_info(variant)
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
    }


def cell_key(config: dict[str, Any]) -> str:
    """The hash of a config without its seed: records of one row share it."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def table_cells(spec: TableSpec, profile: str, seeds: int) -> list[dict[str, Any]]:
    if seeds < 1:
        raise UserError(f"--seeds must be 1 or more, got {seeds}")
    return [cell_config(spec, v, profile, s) for v in spec.rows for s in range(seeds)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose one of: cpu, cuda, auto")
    return torch.device(name)


@dataclass
class RunSummary:
    ran: int = 0
    skipped: int = 0


def measure_model(
    model: torch.nn.Module, rule: str, input_shape: tuple[int, ...]
) -> dict[str, float]:
    """The architecture-only columns (they do not depend on training)."""
    return {
        "params": count_params(model),
        "flops": count_flops(model, input_shape),
        **paper_convention(model, rule),
    }


def run_table(
    spec: TableSpec,
    *,
    profile: str,
    seeds: int,
    device: torch.device,
    store: RunStore,
    data_root: Path,
    download: bool = True,
    force: bool = False,
    runtime: Runtime = Runtime(),
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run every cell of ``spec`` that has no finished record (all of them with ``force``)."""
    protocol = spec.protocol(profile)
    configs = table_cells(spec, profile, seeds)
    store.check_writable()
    summary = RunSummary()
    pending = []
    for config in configs:
        if not force and store.load(config) is not None:
            summary.skipped += 1
        else:
            pending.append(config)
    log(f"{spec.name} [{profile}]: {len(configs)} cells, {summary.skipped} already done, "
        f"{len(pending)} to run on {device}")  # fmt: skip
    if not pending:
        return summary

    data = load_classification(
        protocol.dataset, data_root, download=download,
        train_limit=protocol.train_limit, test_limit=protocol.test_limit,
    ).to(device)  # fmt: skip
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env = environment(device)
    input_shape = tuple(data.train_x.shape[1:])
    for i, config in enumerate(pending, 1):
        started, clock = datetime.now(UTC), time.perf_counter()
        torch.manual_seed(config["seed"])
        model = create_model(config["variant"])
        measured = measure_model(model, spec.paper_flops, input_shape)
        model.to(device)
        result = train_classifier(
            model, data, protocol, seed=config["seed"], device=device,
            desc=f"[{i}/{len(pending)}] {config['variant']} seed {config['seed']}", runtime=runtime,
        )  # fmt: skip
        weights = store.save_weights(config, model.state_dict())
        record = {
            "schema": SCHEMA,
            "status": "complete",
            "key": config_hash(config),
            "cell_key": cell_key(config),
            "config": config,
            "metrics": {**result.metrics, **measured},
            "diverged": result.diverged,
            "history": result.history,
            "weights": weights.name,
            "epoch_times_s": result.epoch_times_s,
            "test_times_s": result.test_times_s,
            "data": data.description,
            "dataset_info": DATASETS[protocol.dataset].summary,
            "env": env,
            "runtime": runtime,
            "started_at": started.isoformat(timespec="seconds"),
            "wall_s": time.perf_counter() - clock,
        }
        path = store.save(record)
        summary.ran += 1
        m = result.metrics
        log(f"  {config['variant']} seed {config['seed']}: accuracy {m['accuracy']:.4f}, "
            f"train {m['train_time_s']:.2f} s/epoch, test {m['test_time_s']:.3f} s -> {path}")  # fmt: skip
    return summary
