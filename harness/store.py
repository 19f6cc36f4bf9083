"""The run store: one JSON record per cell, keyed by a hash of its resolved config.

Layout: ``<runs>/<table>/<profile>/<variant>-seed<k>-<hash>.json``, with the cell's
final weights beside it as ``.pt`` (a state dict, read back weights-only). A record is
written once, when its cell has finished, through a temporary file and an atomic
rename, so a killed run never leaves a half-written record and a rerun picks up
exactly the cells that are missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

SCHEMA = 1

# One id per invocation, inherited by the worker processes it starts (they read the
# environment), so a report can tell rows timed in one run from rows timed in several.
RUN_ID = os.environ.setdefault(
    "HARNESS_RUN_ID", f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
)


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
        "run": RUN_ID,
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
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, data: bytes) -> None:
    """Write a report or figure atomically; a folder that refuses it is the user's to fix."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UserError(
            f"cannot write {path} ({exc.strerror}); pass --out a writable folder"
        ) from None


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


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A saved state dict, refusing any file that holds more than tensors (no arbitrary pickle)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights file {path} is missing; rerun its table with --force") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"refusing to load {path}: not a plain tensor file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"refusing to load {path}: not a state dict of tensors")
    return state


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

    def discard(self, config: dict[str, Any]) -> None:
        """Remove a cell's record and every file beside it (weights, caches), for --force."""
        record = self.path(config)
        for path in record.parent.glob(f"{record.stem}.*"):
            path.unlink(missing_ok=True)

    def save_weights(self, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
        """Write a cell's final weights beside its record (same name, ``.pt``), atomically.

        Saved before the record, so every finished record's weights exist.
        """
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        path = self.path(config).with_suffix(".pt")
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def load_weights(self, record: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weights a record names, through torch's weights-only loader."""
        config = record["config"]
        if not record.get("weights"):
            raise UserError(
                f"the {config['variant']} seed {config['seed']} record in {self.root} has no "
                f"saved weights (made before weights were saved); rerun {config['table']} with --force"
            )
        return load_tensors(self.path(config).parent / Path(record["weights"]).name)

    def adopt_weights(self, config: dict[str, Any], source: Path) -> Path:
        """Give a cell the weights another cell saved (a hard link, else a copy)."""
        path = self.path(config).with_suffix(".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        try:
            os.link(source, path)
        except OSError:  # another file system, or links not allowed
            atomic_write_bytes(path, Path(source).read_bytes())
        return path

    def _trained_index(self, key: str) -> Path:
        return self.root / "_trained" / f"{key}.json"

    def share_training(self, key: str, weights: Path, history: Path) -> None:
        """Note that a model with training key ``key`` sits in ``weights`` (+ its history)."""
        entry = {
            "weights": str(weights.relative_to(self.root)),
            "history": str(history.relative_to(self.root)),
        }
        atomic_write_text(self._trained_index(key), json.dumps(entry))

    def shared_training(self, key: str) -> tuple[Path, Path] | None:
        """The weights and training history of a model trained with key ``key`` by any
        table, if both still exist."""
        index = self._trained_index(key)
        if not index.is_file():
            return None
        entry = json.loads(index.read_text())
        weights, history = self.root / entry["weights"], self.root / entry["history"]
        return (weights, history) if weights.is_file() and history.is_file() else None

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
