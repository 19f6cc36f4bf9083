"""Turns a table spec into cells (row x seed), runs the missing ones, stores records."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from registry import create_model, list_variants, variant_info
from registry.models.classical import ClassicalDenoiser, MissingDependency

from . import distributed
from .adversarial import AttackData, open_attack_images, prepare_attack, run_attack_cell
from .data import ClassificationData, load_classification
from .denoise import DenoiseData, WorkerPool, load_denoise_data, run_denoise_cell
from .errors import UserError
from .imagenet import FOLDER_SETS, FolderData, open_folders, run_folder_cell
from .measure import count_flops, count_params, paper_convention
from .store import SCHEMA, RunStore, config_hash, environment, jsonable
from .tables import LATE_FIELDS, Protocol, TableSpec
from .train import Runtime, TrainResult, train_classifier


def cell_config(
    spec: TableSpec, variant: str, profile: str, seed: int, sigma: int | None = None,
    test_dir: Path | None = None, test_set: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Everything that determines a cell's result; its hash names the record."""
    info = variant_info(variant)
    extra: dict[str, Any] = {} if sigma is None else {"sigma": sigma}
    if test_dir is not None:
        extra["test_dir"] = str(Path(test_dir).resolve())
    if test_set is not None:
        extra["test_set"] = test_set
    return {
        "schema": SCHEMA,
        "table": spec.name,
        "row": spec.row_label(variant),
        "variant": variant,
        "arch": info.arch,
        "model": jsonable(info.kwargs),
        "profile": profile,
        "seed": seed,
        "protocol": {
            k: v
            for k, v in jsonable(spec.protocol(profile)).items()
            if k not in LATE_FIELDS or jsonable(LATE_FIELDS[k]) != v
        },
        "paper_flops": spec.paper_flops,
        **extra,
    }


# config keys that tell records of one row apart (the report keeps the newest per seed and sigma)
_PER_RECORD = ("seed", "sigma", "denoiser_weights")


def cell_key(config: dict[str, Any]) -> str:
    """The hash of a config without its seed and noise level: records of one row share it."""
    return config_hash({k: v for k, v in config.items() if k not in _PER_RECORD})


def test_blocks(
    spec: TableSpec, profile: str, test_dir: Path | None = None
) -> tuple[str | None, ...]:
    """The test sets a table repeats its rows for (Table 6: BSD500 and TID2008), or
    ``(None,)`` when it has one (``--test-dir`` makes one of any table)."""
    sets = spec.protocol(profile).test_sets
    return sets if test_dir is None and len(sets) > 1 else (None,)


def table_cells(
    spec: TableSpec, profile: str, seeds: int, test_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Test sets x rows x noise levels (denoising tables) x seeds, in the paper's order."""
    if seeds < 1:
        raise UserError(f"--seeds must be 1 or more, got {seeds}")
    if test_dir is not None and spec.task != "denoising":
        raise UserError(f"--test-dir applies to denoising tables; {spec.name} is {spec.task}")
    return [
        cell_config(spec, v, profile, s, sigma, test_dir, block)
        for block in test_blocks(spec, profile, test_dir)
        for v in spec.rows
        for sigma in spec.sigmas or (None,)
        for s in range(seeds)
    ]


def build_model(protocol: Protocol, variant: str) -> torch.nn.Module:
    """A row's model as the protocol asks for it (stand-in, narrower width...)."""
    name = protocol.stand_in or variant
    arch = variant_info(name).arch if name in list_variants() else name
    return create_model(name, **protocol.kwargs_for(arch))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose one of: cpu, cuda, auto")
    return torch.device(name)


def _say(line: str) -> None:
    """Progress lines, flushed so that logs redirected to a file show them as they happen."""
    print(line, flush=True)


@dataclass
class RunSummary:
    ran: int = 0
    skipped: int = 0
    unavailable: int = 0  # cells whose method needs a package that is not installed


def measure_model(
    model: torch.nn.Module, rule: str, input_shape: tuple[int, ...]
) -> dict[str, float]:
    """The architecture-only columns (they do not depend on training). A classical
    method has no parameters and no FLOP count (its numpy work is not traced): neither
    column is recorded, and reports show "–"."""
    if isinstance(model, ClassicalDenoiser):
        return {}
    return {
        "params": count_params(model),
        "flops": count_flops(model, input_shape),
        **paper_convention(model, rule),
    }


def _classify_cell(
    model: torch.nn.Module, data: ClassificationData, protocol: Protocol, config: dict[str, Any],
    *, store: RunStore, device: torch.device, desc: str, runtime: Runtime, save_weights: bool,
) -> tuple[TrainResult, Path | None]:  # fmt: skip
    result = train_classifier(
        model, data, protocol, seed=config["seed"], device=device, desc=desc, runtime=runtime
    )
    weights = store.save_weights(config, model.state_dict()) if save_weights else None
    return result, weights


def _load_data(
    spec: TableSpec, protocol: Protocol, data_root: Path, download: bool, device: torch.device,
    test_dir: Path | None,
) -> ClassificationData | DenoiseData | FolderData | AttackData:  # fmt: skip
    if spec.task == "adversarial":  # validation images only, in pixel space
        return open_attack_images(protocol.dataset, data_root)
    if protocol.dataset in FOLDER_SETS:  # JPEG folders read through DataLoaders
        return open_folders(protocol.dataset, data_root)
    if spec.task == "denoising":
        return load_denoise_data(
            protocol, data_root, download=download, device=device, test_dir=test_dir
        )
    return load_classification(
        protocol.dataset, data_root, download=download,
        train_limit=protocol.train_limit, test_limit=protocol.test_limit,
    ).to(device)  # fmt: skip


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
    test_dir: Path | None = None,
    denoiser_weights: Path | None = None,
    workers: int = 1,
    log: Callable[[str], None] = _say,
) -> RunSummary:
    """Run every cell of ``spec`` that has no finished record (all of them with ``force``).

    ``workers`` processes evaluate the images of classical denoising methods in parallel.
    """
    if workers < 1:
        raise UserError(f"--workers must be 1 or more, got {workers}")
    protocol = spec.protocol(profile)
    configs = table_cells(spec, profile, seeds, test_dir)
    if denoiser_weights is not None and Path(denoiser_weights).is_file():
        # a different weights file is a different cell: never reuse a record made with another
        digest = hashlib.sha256(Path(denoiser_weights).read_bytes()).hexdigest()
        for config in configs:
            config["denoiser_weights"] = {"path": str(denoiser_weights), "sha256": digest}
    here, device = distributed.setup(device)
    if here.distributed and (protocol.dataset not in FOLDER_SETS or spec.task == "adversarial"):
        raise UserError(
            f"{spec.name} keeps its data on one device and runs as one process; torchrun is "
            "for tables read from image folders (imagenet)"
        )
    if not here.is_main:
        log = _silent
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

    # adversarial: weights first, so that a missing file is said before any data is read
    attackers = prepare_attack(protocol, denoiser_weights) if spec.task == "adversarial" else None
    data = _load_data(spec, protocol, data_root, download, device, test_dir)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env = environment(device)
    input_shape = data.input_shape
    measured: dict[str, dict[str, float]] = {}
    with WorkerPool(workers) as pool:  # started only if a classical method asks
        for i, config in enumerate(pending, 1):
            if force:
                store.discard(config)
            started, clock = datetime.now(UTC), time.perf_counter()
            torch.manual_seed(config["seed"])
            block = f" on {config['test_set']}" if "test_set" in config else ""
            sigma = f" sigma {config['sigma']}" if "sigma" in config else ""
            desc = f"[{i}/{len(pending)}] {config['variant']}{block}{sigma} seed {config['seed']}"
            try:
                model = build_model(protocol, config["variant"])
            except MissingDependency as exc:
                log(f"  {desc[desc.index(']') + 2 :]}: not run, {exc}")
                summary.unavailable += 1
                continue
            if config["variant"] not in measured:  # the same for every seed and noise level
                measured[config["variant"]] = measure_model(model, spec.paper_flops, input_shape)
            model.to(device)
            if attackers is not None:
                assert isinstance(data, AttackData)
                result = run_attack_cell(model, data, protocol, config, attackers, device=device)
                weights = None
            elif isinstance(data, FolderData):
                result, weights = run_folder_cell(
                    model, data, protocol, config, store=store, device=device, desc=desc,
                    runtime=runtime, save_weights=spec.save_weights,
                )  # fmt: skip
            elif spec.task == "denoising":
                result, weights = run_denoise_cell(
                    model, data, protocol, config, store=store, device=device, desc=desc,
                    pool=pool, reuse_training=not force, retime="train_time_s" in spec.columns,
                )  # fmt: skip
            else:
                result, weights = _classify_cell(
                    model, data, protocol, config, store=store, device=device, desc=desc,
                    runtime=runtime, save_weights=spec.save_weights,
                )  # fmt: skip
            record = {
                "schema": SCHEMA,
                "status": "complete",
                "key": config_hash(config),
                "cell_key": cell_key(config),
                "config": config,
                "metrics": {**result.metrics, **measured[config["variant"]]},
                "diverged": result.diverged,
                "history": result.history,
                "weights": weights.name if weights else None,
                "epoch_times_s": result.epoch_times_s,
                "test_times_s": result.test_times_s,
                "notes": result.notes,
                "data": data.description,
                "env": env,
                "runtime": runtime,
                "started_at": started.isoformat(timespec="seconds"),
                "wall_s": time.perf_counter() - clock,
            }
            summary.ran += 1
            if not here.is_main:  # under torchrun only rank 0 writes
                continue
            path = store.save(record)
            shown = ", ".join(
                f"{k} {result.metrics[k]:.4g}" for k in _LOGGED if k in result.metrics
            )
            log(f"  {desc[desc.index(']') + 2 :]}: {shown} -> {path}")
    return summary


def _silent(_: str) -> None:
    """The log of ranks other than 0."""


_LOGGED = (
    "top1_clean",
    "top1_adversarial",
    "top1_denoised",
    "top1",
    "top5",
    "accuracy",
    "psnr",
    "noisy_psnr",
    "train_time_s",
    "test_time_s",
    "time_per_image_s",
)
