"""The run store: one JSON record per cell, keyed by a hash of its resolved config.

Layout: ``<runs>/<table>/<profile>/<variant>-seed<k>-<hash>.json``, with the cell's
final weights beside it as ``.pt`` (a state dict, read back weights-only). A record is
written once, when its cell has finished, through a temporary file and an atomic
rename, so a killed run never leaves a half-written record and a rerun picks up
exactly the cells that are missing.

Files left by faults are dealt with here, in one place, for every command: temporary
files of a killed writer are swept by the next run (their names carry the writer's host
and pid, so a live writer's are never touched), and a record, index or weights file
that cannot be read as expected is moved to ``<runs>/_quarantine/`` with a one-line
warning, so its cell is redone instead of crashing a command or vanishing from a report.
Records are strict JSON: a non-finite number is stored as ``null`` and listed under
``nonfinite``, and read back as the number it was.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.store.lease import pid_alive

if TYPE_CHECKING:
    import torch

    from registry import bitonic
else:  # commands that only read records never import torch (issue 29)
    torch, bitonic = lazy("torch"), lazy("registry.bitonic")

SCHEMA = 2  # 2: configs hold the task's whole protocol; records name host, pid, contention

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
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "topk": bitonic.path(device),  # how top-k ran, which its times depend on
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),
        "run": RUN_ID,
    }


@functools.cache
def _git(*args: str) -> str | None:
    """A git command's output in the harness's checkout, once per process (None outside one)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _git_commit() -> str | None:
    return (_git("rev-parse", "HEAD") or "").strip() or None


def _git_dirty() -> bool | None:
    """Whether tracked files of the checkout differ from its commit (untracked ones aside)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status.strip())


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    atomic_write_bytes(path, text.encode())


_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"
# .<name>.<host>.<pid>.<random>.tmp ; the random part is mkstemp's (letters, digits, _)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # written before names held a pid
_TEMP_AGE_S = {"legacy": 60.0, "other_host": 3600.0, "pid_reused": 86400.0}


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets as it reads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), not
    mkstemp's 0600, so a runs folder shared by a group stays readable to it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is a temporary file left by a writer that can no longer finish it:
    one of this host whose pid is gone, or (for other hosts, and names without a pid)
    one older than any write takes."""
    match = _TEMP.match(path.name)
    if match is None and not _LEGACY_TEMP.match(path.name):
        return False
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except OSError:
        return False
    if match is None:
        return age > _TEMP_AGE_S["legacy"]
    if match["host"] != _HOST:
        return age > _TEMP_AGE_S["other_host"]
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    return not pid_alive(pid) or age > _TEMP_AGE_S["pid_reused"]


def stale_temps(folder: Path) -> list[Path]:
    """Temporary files under ``folder`` (at any depth) that no live writer will finish."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(".*.tmp") if p.is_file() and is_stale_temp(p))


def sweep_temps(folder: Path) -> list[Path]:
    """Remove the stale temporary files under ``folder``; the ones removed."""
    removed = []
    for path in stale_temps(folder):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def strict_json(value: Any) -> tuple[Any, list[list[Any]]]:
    """``value`` with every non-finite float replaced by None, and where each was:
    ``[[key path], "nan" | "inf" | "-inf"]`` (JSON has no token for them)."""
    found: list[list[Any]] = []

    def walk(item: Any, where: list[Any]) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            found.append([where, repr(item)])
            return None
        if isinstance(item, dict):
            return {k: walk(v, [*where, k]) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, [*where, i]) for i, v in enumerate(item)]
        return item

    return walk(value, []), found


def dumps_strict(value: Any, **options: Any) -> str:
    """Strict JSON text of ``value`` (non-finite floats become null)."""
    return json.dumps(strict_json(jsonable(value))[0], allow_nan=False, **options)


def _restore_nonfinite(record: dict[str, Any]) -> None:
    """Put back the non-finite numbers :func:`strict_json` took out of a record."""
    for where, kind in record.get("nonfinite") or []:
        target: Any = record
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = float(kind)


def write_output(path: Path, data: bytes) -> None:
    """Write a report or figure atomically; a folder that refuses it is the user's to fix."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UserError(
            f"cannot write {path} ({exc.strerror}); pass --out a writable folder"
        ) from None


def check_folder(path: Path, option: str) -> Path:
    """Fail with one line unless ``path`` is a folder or could be made as one (nothing
    in the way is a file); the nearest part of it that exists."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is not a directory; pass a folder")
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is not a directory; pass a folder")
    return existing


def check_writable_dir(path: Path, option: str) -> None:
    """Prove files could be written in ``path`` (made later, when needed), or fail with one
    line. Nothing is created: a refused command leaves no empty folder behind."""
    existing = check_folder(path, option)
    try:  # a probe file where the first new folder (or file) would go, removed at once
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"{option} {path} is not writable ({exc.strerror}); pass a folder you can write to"
        ) from None


@contextmanager
def removing_new_dirs(*paths: Path) -> Iterator[None]:
    """On an error, remove the folders made on the way to each of ``paths`` while the
    block ran, where they are still empty: a refused input leaves no empty folder."""
    made = []
    for path in paths:
        first = Path(path)
        while not first.parent.exists() and first.parent != first:
            first = first.parent
        if not first.exists():
            made.append(first)
    try:
        yield
    except BaseException:
        for top in made:
            _remove_empty_tree(top)
        raise


def _remove_empty_tree(top: Path) -> None:
    """Remove ``top`` and the folders under it, deepest first, where each is empty."""
    if not top.is_dir() or top.is_symlink():
        return
    for folder, _, _ in sorted(os.walk(top), key=lambda item: -len(item[0])):
        with suppress(OSError):  # not empty: something was written, and it stays
            os.rmdir(folder)


# a storage that refuses writes: every cell after this one would fail the same way
STORAGE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM})


def storage_error(exc: OSError, what: str | None = None) -> UserError:
    """One line for a write the storage refused (disk full, folder turned read-only)."""
    what = what or (str(exc.filename) if exc.filename is not None else "to the runs folder")
    return UserError(
        f"cannot write {what} ({exc.strerror or exc}); cells finished before it are saved: "
        "free space or fix the folder's permissions, then rerun the same command"
    )


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a failed write (disk full, folder turned read-only) into one line naming
    ``what`` was being written; everything finished before it stays saved."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, what) from None


def warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def quarantine(
    path: Path, reason: str, root: Path | None = None, also: tuple[Path, ...] = ()
) -> Path | None:
    """Move an unreadable file (or folder) out of the way, into ``<root>/_quarantine/``,
    with a one-line warning; the cell it belongs to is then redone. ``also``: files that
    go with it (the damaged weights behind a record), moved under the same warning.

    ``root`` is the runs folder; by default the one a file beside a record lives in
    (``<runs>/<table>/<profile>/<file>``). Where the move itself fails (a read-only
    folder), the warning says so and the file stays.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parents[2]
    stamp = f"{datetime.now().strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    try:
        target = _move_aside(path, root, stamp)
        for other in also:
            if other.exists() or other.is_symlink():
                _move_aside(Path(other), root, stamp)
    except OSError as exc:
        warn(f"{path} is unreadable ({reason}) and could not be moved aside ({exc.strerror})")
        return None
    with_ = f" with {', '.join(str(p) for p in also)}" if also else ""
    warn(f"{path} is unreadable ({reason}); moved to {target}{with_}, its cell will be redone")
    return target


def _move_aside(path: Path, root: Path, stamp: str) -> Path:
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path(path.name)
    target = root / "_quarantine" / f"{'__'.join(relative.parts)}.{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def read_json(path: Path) -> Any:
    """JSON from ``path``; ValueError (with the reason) for anything else, OSError when
    it cannot be read at all (a folder, no permission)."""
    data = path.read_bytes()
    try:
        return loads_strict(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except ValueError as exc:
        raise ValueError("empty" if not data.strip() else str(exc)) from None


def _no_constant(token: str) -> None:
    raise ValueError(f"not strict JSON: {token}")


def loads_strict(text: str) -> Any:
    """JSON as this harness writes it: ValueError (one line) for anything else, including
    NaN or Infinity tokens, numbers longer than Python reads and nesting too deep."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    except RecursionError:
        raise ValueError("not JSON: nested too deeply") from None
    except ValueError as exc:  # a number of more digits than int() accepts, NaN
        raise ValueError((str(exc).splitlines() or ["not JSON"])[0]) from None


def torch_load(path: Path) -> Any:
    """``torch.load`` with the weights-only unpickler, its warnings about the file's pickle
    protocol silenced (a damaged file is an error, said in one line by the caller)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def load_error(exc: BaseException) -> str:
    """The reason in one of torch.load's errors, in one short line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip the paragraph about weights_only's default
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines or [type(exc).__name__])[0][:200]


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A saved state dict, refusing any file that holds more than tensors (no arbitrary pickle)."""
    try:
        state = torch_load(path)
    except FileNotFoundError:
        raise UserError(f"weights file {path} is missing; rerun its table with --force") from None
    except IsADirectoryError:
        raise UserError(f"weights file {path} is a directory; pass a .pt file") from None
    except Exception as exc:  # torch's unpickler fails in many ways on a damaged file
        raise UserError(
            f"refusing to load {path}: not a plain tensor file ({load_error(exc)})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"refusing to load {path}: not a state dict of tensors")
    return state


# Files beside a record that its results come from. A record lists each one's size and
# SHA-256 under "files" (records written before that have none: nothing is checked).
DEPENDENT_SUFFIXES = (".pt", ".train.json", ".images.jsonl")


def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as a record stores them."""
    digest, size = hashlib.sha256(), 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def digest_problem(path: Path, want: dict[str, Any], verify: bool) -> str | None:
    """Why ``path`` is not the file ``want`` describes (None when it is): its size is
    always compared, its SHA-256 with ``verify``."""
    try:
        size = path.stat().st_size if path.is_file() else None
    except (OSError, ValueError):
        size = None
    if size is None:
        return f"{path.name} is missing"
    if size != want["size"]:
        return f"{path.name} holds {size} bytes, the record says {want['size']}"
    if verify:
        try:
            same = file_digest(path)["sha256"] == want["sha256"]
        except OSError as exc:
            return f"{path.name} cannot be read ({exc.strerror})"
        if not same:
            return f"{path.name} does not match the SHA-256 the record holds"
    return None


def _is_digest(value: Any) -> bool:
    return (
        isinstance(value, dict) and isinstance(value.get("size"), int) and value["size"] >= 0
        and isinstance(value.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", value["sha256"])
        is not None
    )  # fmt: skip


def _is_plain_name(name: Any) -> bool:
    """A file name beside the record: no folder part, so it cannot point elsewhere."""
    return (
        isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
        and "\\" not in name and "\0" not in name
    )  # fmt: skip


def inside(root: Path, relative: Any) -> Path | None:
    """``root / relative`` when ``relative`` is a relative path that stays inside ``root``
    (``..`` and links that leave it are refused); None otherwise."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        return None
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        return None
    path = root / relative
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return None
    return path


def record_problem(record: Any, expected_hash: str | None = None) -> str | None:
    """Why ``record`` is not a finished record of this harness (None when it is one).

    The one place that decides what "done" means: runner, plan, report and figures all
    read records through :class:`RunStore`, which asks this.
    """
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if not isinstance(record.get("schema"), int):
        return "no schema number"
    if record["schema"] != SCHEMA:
        return f"{_OTHER_SCHEMA}{record['schema']}, this harness writes {SCHEMA}"
    if record.get("status") != "complete":
        return f"status {record.get('status')!r}"
    missing = [k for k in _RECORD_FIELDS if k not in record]
    if missing:
        return f"no {', '.join(missing)}"
    fields = {**_RECORD_FIELDS, **{k: t for k, t in _OPTIONAL_FIELDS.items() if k in record}}
    wrong = [k for k, types in fields.items() if not isinstance(record[k], types)]
    config = record["config"]
    if not wrong:
        wrong = [
            f"config.{k}" for k, t in _CONFIG_FIELDS.items() if not isinstance(config.get(k), t)
        ]
    if not wrong:
        wrong = [f"metrics.{k}" for k, v in record["metrics"].items() if not _is_metric(v)]
        wrong += ["history"] * (not all(isinstance(h, dict) for h in record.get("history", [])))
    if not wrong and "files" in record:
        files = record["files"]
        wrong = ["files"] * (not all(_is_plain_name(k) and _is_digest(v) for k, v in files.items()))
    if not wrong and "started_at" in record:
        try:
            datetime.fromisoformat(record["started_at"])
        except ValueError:
            wrong = ["started_at"]
    if wrong:
        return f"wrong type or value of {', '.join(wrong)}"
    if expected_hash is not None and config_hash(config) != expected_hash:
        return "its config does not match its file name"
    return None


_OTHER_SCHEMA = "a record of schema "
_NUMBER = (int, float)
# required, and (the fields records of older harness versions may lack) checked if present
_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "config": dict, "metrics": dict, "wall_s": _NUMBER, "env": dict, "data": str,
}  # fmt: skip
_OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "history": list, "started_at": str, "notes": list, "diverged": bool,
    "weights": (str, type(None)), "files": dict, "ended_at": str, "command": str,
    "data_files": list, "timing": dict,
}  # fmt: skip
_CONFIG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "table": str, "variant": str, "profile": str, "seed": int,
}  # fmt: skip


def _is_metric(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_metric(v) for v in value)
    return value is None or isinstance(value, int | float)


class RunStore:
    """Reads and writes run records under one folder."""

    def __init__(self, root: Path | str, verify: bool = False) -> None:
        self.root = Path(root)
        self.verify = verify  # compare the SHA-256 of files behind records, not only sizes

    def check_writable(self) -> None:
        """Fail with one line before any work if records could not be saved; sweep the
        temporary files killed writers left."""
        check_writable_dir(self.root, "--runs-dir")
        sweep_temps(self.root)

    def stale_temps(self) -> list[Path]:
        """Temporary files killed writers left (the next run removes them)."""
        return stale_temps(self.root)

    def path(self, config: dict[str, Any]) -> Path:
        name = f"{config['variant']}-seed{config['seed']}-{config_hash(config)}.json"
        return self.root / config["table"] / config["profile"] / name

    def error_path(self, config: dict[str, Any]) -> Path:
        """Where a failed cell's error and traceback are kept until it succeeds."""
        return self.path(config).with_suffix(".error.txt")

    def quarantine(self, path: Path, reason: str, also: tuple[Path, ...] = ()) -> Path | None:
        return quarantine(path, reason, self.root, also)

    def inspect(self, config: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """(the finished record of this config, None) or (None, why the file there is not
        one); (None, None) when there is no file. Reads only."""
        path = self.path(config)
        if not path.exists():
            return None, None
        record, problem, _ = self._read(path, config_hash(config))
        return record, problem

    def load(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The finished record of this exact config, if there is one. A file there that
        is not one (unreadable, a stub, another schema), or one whose weights or cache
        do not match it, is quarantined with them: the cell is redone."""
        path = self.path(config)
        if not path.exists():
            return None
        record, problem, damaged = self._read(path, config_hash(config))
        if problem is not None:
            self.quarantine(path, problem, damaged)
        return record

    def _read(
        self, path: Path, expected_hash: str | None
    ) -> tuple[dict | None, str | None, tuple[Path, ...]]:
        """(record, None, ()) or (None, why it is not a finished record, the damaged
        files behind it that go to quarantine with it)."""
        try:
            record = read_json(path)
        except (OSError, ValueError) as exc:
            return None, getattr(exc, "strerror", None) or str(exc), ()
        try:
            problem = record_problem(record, expected_hash)
        except RecursionError:
            problem = "nested too deeply"
        if problem is not None:
            return None, problem, ()
        try:
            _restore_nonfinite(record)
        except (TypeError, KeyError, IndexError, ValueError, AttributeError):
            return None, "a broken nonfinite list", ()
        for name, want in record.get("files", {}).items():
            problem = digest_problem(path.parent / name, want, self.verify)
            if problem is not None:
                return None, problem, (path.parent / name,)
        return record, None, ()

    def save(self, record: dict[str, Any]) -> Path:
        path = self.path(record["config"])
        beside = (path.with_suffix(suffix) for suffix in DEPENDENT_SUFFIXES)
        record = {**record, "files": {p.name: file_digest(p) for p in beside if p.is_file()}}
        data, nonfinite = strict_json(jsonable(record))
        if nonfinite:
            data["nonfinite"] = nonfinite
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False)
        with writing(f"the record of {path.stem} ({path})"):
            atomic_write_text(path, text)
        return path

    def discard(self, config: dict[str, Any], keep: tuple[str, ...] = ()) -> None:
        """Remove a cell's record and every file beside it (weights, caches), for --force;
        files ending in one of ``keep`` (the cell's lease) stay."""
        record = self.path(config)
        for path in record.parent.glob(f"{record.stem}.*"):
            if not path.name.endswith(keep):
                path.unlink(missing_ok=True)

    def save_weights(self, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
        """Write a cell's final weights beside its record (same name, ``.pt``), atomically.

        Saved before the record, so every finished record's weights exist. Anything in
        the way that is not a file (a folder) is quarantined first.
        """
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        path = self.path(config).with_suffix(".pt")
        if path.exists() and not path.is_file():
            self.quarantine(path, "not a file")
        with writing(f"the weights of {path.stem} ({path})"):
            atomic_write_bytes(path, buffer.getvalue())
        return path

    def cell_weights(self, config: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The weights saved beside this cell's record, or None when there are none or
        they cannot be read (then they are quarantined and the cell retrains)."""
        path = self.path(config).with_suffix(".pt")
        if not path.exists():
            return None
        try:
            return load_tensors(path)
        except (UserError, OSError) as exc:
            self.quarantine(path, str(exc).split(": ", 1)[-1] if isinstance(exc, UserError) else
                            (exc.strerror or str(exc)))  # fmt: skip
            return None

    def load_weights(self, record: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weights a record names, through torch's weights-only loader, once they
        match the SHA-256 the record holds (a damaged cell is quarantined, to be redone)."""
        config = record["config"]
        if not record.get("weights"):
            raise UserError(
                f"the {config['variant']} seed {config['seed']} record in {self.root} has no "
                f"saved weights (made before weights were saved); rerun {config['table']} with --force"
            )
        path = self.path(config).parent / Path(record["weights"]).name
        want = record.get("files", {}).get(path.name)
        problem = digest_problem(path, want, verify=True) if want else None
        if problem is not None:  # hashed before another table's figure uses them
            self.quarantine(self.path(config), problem, (path,))
            raise UserError(f"{path} is damaged ({problem}); rerun {config['table']} to redo it")
        return load_tensors(path)

    def adopt_weights(self, config: dict[str, Any], source: Path) -> Path:
        """Give a cell the weights another cell saved (a hard link, else a copy)."""
        path = self.path(config).with_suffix(".pt")
        with writing(f"the weights of {path.stem} ({path})"):
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                self.quarantine(path, "not a file")
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
            "files": {"weights": file_digest(weights), "history": file_digest(history)},
        }
        index = self._trained_index(key)
        with writing(f"the training index {index}"):
            atomic_write_text(index, json.dumps(entry))

    def shared_training(
        self, key: str, since: float | None = None, *, read_only: bool = False
    ) -> tuple[Path, Path] | None:
        """The weights and training history of a model trained with key ``key`` by any
        table (indexed at or after ``since``, a ``time.time()``, when given), if both still
        exist and match the sizes and SHA-256 the entry holds (always hashed, since
        another cell is about to use them; with ``read_only``, for ``plan``, only when
        the store verifies, and nothing is moved). An entry that is unreadable or points
        outside the runs folder is quarantined, as are files that do not match it."""
        index = self._trained_index(key)
        try:
            indexed = index.stat().st_mtime
        except FileNotFoundError:
            return None
        if since is not None and indexed < since:
            return None
        problem, damaged, paths = self._entry_problem(index, verify=self.verify or not read_only)
        if problem is not None:
            if not read_only:
                self.quarantine(index, problem, damaged)
            return None
        return paths

    def _entry_problem(
        self, index: Path, verify: bool
    ) -> tuple[str | None, tuple[Path, ...], tuple[Path, Path] | None]:
        """(None, (), (weights, history)) for a usable index entry (None for the paths
        when its files are gone), else (why not, the damaged files behind it, None)."""
        try:
            entry = read_json(index)
        except (OSError, ValueError) as exc:
            return getattr(exc, "strerror", None) or str(exc), (), None
        if not isinstance(entry, dict):
            return "not an index entry", (), None
        paths = {k: inside(self.root, entry.get(k)) for k in ("weights", "history")}
        if None in paths.values():
            return "its paths are not files inside the runs folder", (), None
        if not all(p.is_file() for p in paths.values()):
            return None, (), None
        files = entry.get("files", {})  # entries written before digests have none
        if not (isinstance(files, dict) and all(_is_digest(v) for v in files.values())):
            return "a broken files list", (), None
        for name, path in paths.items():
            problem = digest_problem(path, files[name], verify) if name in files else None
            if problem is not None:
                return problem, (path,), None
        return None, (), (paths["weights"], paths["history"])

    def records(self, table: str, profile: str | None = None) -> Iterator[dict[str, Any]]:
        """Every finished record of ``table`` (optionally one profile). A file that is not
        one is named in a warning and quarantined, never silently dropped; a record of
        another schema (an older harness) is named and left where it is."""
        base = self.root / table
        pattern = f"{profile}/*.json" if profile else "*/*.json"
        for path in sorted(base.glob(pattern)):
            if path.name.endswith(".train.json"):
                continue
            expected = path.stem.rsplit("-", 1)[-1]
            record, problem, damaged = self._read(path, expected)
            if problem is not None and problem.startswith(_OTHER_SCHEMA):
                warn(f"{path} is left out: {problem} (rerun its table to replace it)")
                continue
            if problem is not None:
                self.quarantine(path, problem, damaged)
                continue
            record["_path"] = str(path)
            yield record
