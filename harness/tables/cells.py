"""A table spec becomes cells (test set x row x noise level x seed), each with the config
that determines its result and names its record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.task import RunOptions, get_task
from harness.store.records import SCHEMA, config_hash, jsonable
from registry import variant_info

if TYPE_CHECKING:
    from harness.tables.paper import TableSpec

MAX_SEEDS = 1000  # more is a typo, not an experiment


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
    if spec.plugins:  # only when there are some: the paper's configs (and hashes) stay as they were
        extra["plugins"] = list(spec.plugins)
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
    return get_task(spec.task).blocks(spec.protocol(profile), test_dir)


def table_cells(
    spec: TableSpec, profile: str, seeds: int, test_dir: Path | None = None,
    options: RunOptions | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Test sets x rows x noise levels (denoising tables) x seeds, in the paper's order."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserError(f"--seeds must be 1 to {MAX_SEEDS}, got {seeds}")
    task = get_task(spec.task)
    if test_dir is not None and not task.accepts_test_dir:
        raise UserError(f"--test-dir applies to denoising tables; {spec.name} is {spec.task}")
    extra = task.extra_config(spec.protocol(profile), options) if options is not None else {}
    return [
        {**cell_config(spec, v, profile, s, sigma, test_dir, block), **extra}
        for block in test_blocks(spec, profile, test_dir)
        for v in spec.rows
        for sigma in spec.sigmas or (None,)
        for s in range(seeds)
    ]
