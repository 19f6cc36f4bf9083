"""Results that are slow to compute and fully determined by their inputs, kept between
processes: a model's parameter and FLOP counts, say, which ``plan`` and ``report`` need
for models that have not run (building and tracing one takes from 0.05 s to seconds).

An entry is a strict-JSON file named by the SHA-256 of its key and holding the key
itself, so a lookup returns a value only for exactly the inputs that produced it. A key
includes :func:`code_fingerprint`, the source of the code that computes the value: after
any change to it, old entries are never read again. The folder is ``$HARNESS_CACHE_DIR``,
else ``$XDG_CACHE_HOME/feature-pooling-harness``, else ``~/.cache/feature-pooling-harness``;
deleting it only costs the time to recompute.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import registry
from harness.store.records import atomic_write_text, dumps_strict, loads_strict

ENV = "HARNESS_CACHE_DIR"
_HARNESS = Path(__file__).resolve().parents[1]  # the harness package


def cache_dir() -> Path:
    """Where entries are kept (the environment is read at every call)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "feature-pooling-harness"


def _entry_path(kind: str, key: dict[str, Any]) -> tuple[Path, str]:
    text = dumps_strict(key, sort_keys=True)
    return cache_dir() / kind / f"{hashlib.sha256(text.encode()).hexdigest()}.json", text


def lookup(kind: str, key: dict[str, Any]) -> Any | None:
    """The value remembered for exactly ``key``, or None (never stored, or unreadable)."""
    path, text = _entry_path(kind, key)
    try:
        entry = loads_strict(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or dumps_strict(entry.get("key"), sort_keys=True) != text:
        return None
    return entry.get("value")


def remember(kind: str, key: dict[str, Any], value: Any) -> None:
    """Keep ``value`` for ``key``; a folder that cannot be written only means no cache."""
    path, _ = _entry_path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps_strict({"key": key, "value": value}, sort_keys=True))
    except OSError:
        pass


@functools.cache
def _installed_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    return tuple({os.path.join(d, "") for p in dirs for d in (p, os.path.realpath(p))})


def code_fingerprint(*packages: str) -> str:
    """SHA-256 of the code a cached value may depend on: every source file of the
    ``harness`` and ``registry`` packages (Python, and the C of registry's kernel, whose
    build is loaded only with torch), the loaded modules outside installed packages
    (plugins from a checkout), the loaded modules of ``packages`` (a task's) and of the
    installed entry points imported so far, and the versions of torch and fvcore. Each
    file is read once per process (code imported does not change while it runs)."""
    installed = _installed_dirs()
    tops = {*packages, *(e.split(":")[0].split(".")[0] for e in registry.loaded_entry_points())}
    files = set(_package_files())
    ours = tuple(str(folder) + os.sep for folder in _package_folders())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        # a bare name is no file: torch.ops and torch.classes say "_ops.py" and "_classes.py",
        # and the key must not change when torch is imported (``report`` may never import it)
        if not file or not os.path.isabs(file) or file.startswith(ours):
            continue
        if name.partition(".")[0] in tops or not file.startswith(installed):
            files.add(file)
    return _fingerprint(frozenset(files))


def _package_folders() -> tuple[Path, ...]:
    return _HARNESS, Path(registry.__file__).resolve().parent


@functools.cache
def _package_files() -> tuple[str, ...]:
    return tuple(
        str(p)
        for folder in _package_folders()
        for glob in ("*.py", "*.c")
        for p in folder.rglob(glob)
    )


@functools.cache
def _fingerprint(files: frozenset[str]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.encode() + b"\0")
        try:
            digest.update(Path(file).read_bytes())
        except OSError:
            digest.update(b"unreadable")
    for dist in ("torch", "fvcore"):
        try:
            digest.update(f"{dist} {importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist} absent".encode())
    return digest.hexdigest()
