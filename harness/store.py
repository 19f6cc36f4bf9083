"""The run store: one JSON record per cell, keyed by a hash of its resolved config.

Layout: ``<runs>/<table>/<profile>/<variant>-seed<k>-<hash>.json``. A record is
written once, when its cell has finished, through a temporary file and an atomic
rename, so a killed run never leaves a half-written record and a rerun picks up
exactly the cells that are missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

SCHEMA = 1


def jsonable(value: Any) -> Any:
    """Plain JSON data for configs (dataclasses become dicts, tuples lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **jsonable(dataclasses.asdict(value))}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def environment(device: torch.device) -> dict[str, Any]:
    """Where a record was measured: enough to judge whether two timings compare."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = (
            f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        )
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_dir(path: Path, option: str) -> None:
    """Create ``path`` if needed and prove a file can be written there, or fail with one line."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is not a directory; pass a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"{option} {path} is not writable ({exc.strerror}); pass a folder you can write to"
        ) from None


class RunStore:
    """Reads and writes run records under one folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail with one line before any work if records could not be saved."""
        check_writable_dir(self.root, "--runs-dir")

    def path(self, config: dict[str, Any]) -> Path:
        name = f"{config['variant']}-seed{config['seed']}-{config_hash(config)}.json"
        return self.root / config["table"] / config["profile"] / name

    def load(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The finished record of this exact config, if there is one."""
        path = self.path(config)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("status") == "complete" else None

    def save(self, record: dict[str, Any]) -> Path:
        path = self.path(record["config"])
        atomic_write_text(path, json.dumps(jsonable(record), indent=1, sort_keys=True))
        return path

    def records(self, table: str, profile: str | None = None) -> Iterator[dict[str, Any]]:
        """Every finished record of ``table`` (optionally one profile), unreadable ones skipped."""
        base = self.root / table
        pattern = f"{profile}/*.json" if profile else "*/*.json"
        for path in sorted(base.glob(pattern)):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("status") == "complete" and record.get("schema") == SCHEMA:
                record["_path"] = str(path)
                yield record
