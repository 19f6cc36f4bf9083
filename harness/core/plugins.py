"""Users' own code without editing the package: the plugin modules a study or ``--plugins``
names, and installed packages' entry points.

A plugin is a module whose import registers things: reduction kinds
(``registry.register_reduction``), variants (``registry.register_variant``), FLOP handles
(``harness.train.measure.register_flop_handle``). Importing a module runs its code, and
plugins are the one way a study file runs code, so :func:`load_plugins` names the
modules it is about to import before it imports any of them.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.core.errors import UserError
from registry import load_entry_points

__all__ = ["PluginError", "load_plugins"]


class PluginError(UserError):
    """A plugin that cannot be imported; ``module`` names it, ``reason`` is one line."""

    def __init__(self, module: str, reason: str) -> None:
        self.module, self.reason = module, reason
        super().__init__(f"plugin {module!r} failed to import: {reason}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_LOADED: set[str] = set()  # the plugin modules imported in this process


def load_plugins(
    modules: Sequence[str],
    search_paths: Sequence[Path] = (),
    say: Callable[[str], None] = _stderr,
) -> None:
    """Import installed packages' entry points (groups ``harness.reductions`` and
    ``harness.variants``), then ``modules``, each once per process, saying which before
    importing. A module is a dotted name or the path of a ``.py`` file; ``search_paths``
    (a study file's folder, say) come first on ``sys.path`` while they are imported, and
    relative file paths are looked for there, then in the working directory. Raises
    :class:`PluginError` (one line: the module and its error's last line)."""
    try:
        load_entry_points(announce=lambda names: say(_importing(names, "installed entry points")))
    except ImportError as exc:
        raise PluginError(exc.name or "?", _last_line(exc.__cause__ or exc)) from None
    located = {name: _locate(name, search_paths) for name in dict.fromkeys(modules)}
    todo = {name: where for name, where in located.items() if where[0] not in _LOADED}
    if not todo:
        return
    say(_importing(list(todo), "plugins"))
    for name, (module, folders) in todo.items():
        saved = list(sys.path)
        sys.path[:0] = [str(f) for f in folders]
        try:
            importlib.import_module(module)
        except Exception as exc:  # the plugin's own code: whatever it raises is its error
            raise PluginError(name, _last_line(exc)) from None
        finally:
            sys.path[:] = saved
        _LOADED.add(module)


def _importing(names: Sequence[str], what: str) -> str:
    return f"importing {what} (this runs their code): {', '.join(names)}"


def _locate(name: str, search_paths: Sequence[Path]) -> tuple[str, list[Path]]:
    """The module to import for ``name`` and the folders to search first for it."""
    if not isinstance(name, str) or not name:
        raise PluginError(str(name), "expected a module name or the path of a .py file")
    if not (name.endswith(".py") or "/" in name or "\\" in name):
        if not all(part.isidentifier() for part in name.split(".")):
            raise PluginError(name, "not a module name (a.b.c) or the path of a .py file")
        return name, list(search_paths)
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [*(Path(p) / path for p in search_paths), path]
    found = next((p.resolve() for p in candidates if p.is_file()), None)
    if found is None or found.suffix != ".py":
        looked = ", ".join(str(p) for p in candidates)
        raise PluginError(name, f"no such .py file (looked for {looked})")
    if not found.stem.isidentifier():
        raise PluginError(name, f"{found.name} cannot be imported: its name is not an identifier")
    other = sys.modules.get(found.stem)
    if other is not None and Path(getattr(other, "__file__", "") or "").resolve() != found:
        raise PluginError(name, f"another module named {found.stem!r} is already imported")
    return found.stem, [found.parent]


def _last_line(exc: BaseException) -> str:
    """``ModuleNotFoundError: No module named 'x'``; a syntax error with its file:line."""
    line = traceback.format_exception_only(exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:
        line += f" ({exc.filename}:{exc.lineno})"
    return line
