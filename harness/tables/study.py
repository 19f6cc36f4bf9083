"""Studies: an ablation written as one TOML file, compiled into the same :class:`TableSpec`
the paper's tables are, so that plan, run, report, claims and figures treat both alike.

A study names its rows (registered variants, or structured definitions such as
``{ arch = "vgg16", reductions = [{ at = 2, method = "topk", stride = 4 }] }``), a grid
that expands into more of them, a protocol (a paper table's, with overrides), seeds,
columns, the selection rule, claims, and the plugin modules its reductions come from.
Nothing in the file is evaluated: the only code a study can bring in is its ``plugins``,
which are named on stderr before they are imported. The keys are documented in the
README ("Your own ablation in one file").
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.metrics import find_column
from harness.core.plugins import load_plugins
from harness.core.protocol import Protocol
from harness.core.task import get_task
from harness.stats.claims import KINDS as CLAIM_KINDS
from harness.stats.claims import Claim
from harness.stats.intervals import SELECT_RULES
from harness.store.records import RunStore
from harness.tables.cells import MAX_SEEDS
from harness.tables.paper import PROFILES, TABLES, TableSpec, get_table
from harness.tables.recorded import STUDY_NAME, refuse_bare_study_name
from harness.tables.variants import define, kwargs_json
from registry import Reduction, variant_info
from registry.models.mnist import CONV2_CHANNELS
from registry.models.vgg import POSITIONS, check_reductions

MAX_CELLS = 100_000  # a larger grid is refused unless --yes: it is more likely a typo

_STUDY_KEYS = ("name", "title", "task", "protocol", "rows", "grid", "reference", "seeds",
               "columns", "select", "claims", "plugins", "notes")  # fmt: skip
_AXES = ("arch", "at", "method", "stride")
_GRID_KEYS = (*_AXES, "exclude")
_ROW_KEYS = ("arch", "reductions", "label")
_REDUCTION_KEYS = ("at", "method", "stride")
_CLAIM_KEYS = ("text", "kind", "rows", "columns", "low", "high", "source")


@dataclass(frozen=True)
class _Arch:
    """How structured rows of one architecture become its keyword arguments."""

    table: str  # the paper table whose protocol and columns a study of it starts from
    positions: tuple[int, ...]  # where a reduction may sit; () = one place, no ``at``
    where: str  # what a position is, for messages and labels

    def kwargs(self, reductions: Mapping[int | None, Reduction]) -> dict[str, Any]:
        if not self.positions:
            reduction = reductions.get(None, Reduction())
            reduction.out_channels(CONV2_CHANNELS)  # a stride that does not divide is refused
            return {"reduction": reduction}
        return {"reductions": check_reductions(reductions)} if reductions else {}


_ARCHS = {
    "vgg16": _Arch("table2", POSITIONS, "block"),
    "mnist": _Arch("table1", (), "after conv2"),
}


class StudyError(UserError):
    """A study file that cannot be compiled, named with the file."""


# --- reading ------------------------------------------------------------------------------


def is_study(name: str) -> bool:
    """Whether a TABLE argument names a study file rather than a paper table."""
    return name.endswith(".toml") or (name not in TABLES and Path(name).is_file())


def get_spec(name: str, *, yes: bool = False, store: RunStore | None = None) -> TableSpec:
    """A paper table by name, or the study a ``.toml`` path holds; a study's bare name
    whose records ``store`` holds is answered with where its file is."""
    if is_study(name):
        return load_study(Path(name), yes=yes)
    if store is not None:
        refuse_bare_study_name(store, name)
    return get_table(name)


_LOADED: dict[tuple[Path, int, bool], TableSpec] = {}


def load_study(path: Path, *, yes: bool = False) -> TableSpec:
    """Read and compile a study file (once per process and version of the file)."""
    try:
        stat = path.stat()
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"study file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read study file {path}: {getattr(exc, 'strerror', exc)}") from None
    key = (path.resolve(), stat.st_mtime_ns, yes)
    if key not in _LOADED:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(_syntax_error(path, str(exc))) from None
        _LOADED[key] = compile_study(raw, source=str(path), default_name=path.stem, yes=yes)
    return _LOADED[key]


def _syntax_error(path: Path, message: str) -> str:
    """``file:line:column: message`` from tomllib's ``message (at line L, column C)``."""
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found is None:
        return f"{path}: {message}"
    return f"{path}:{found[1]}:{found[2]}: {message[: found.start()]}"


def compile_study(
    raw: Mapping[str, Any], *, source: str, default_name: str = "study", yes: bool = False
) -> TableSpec:
    """The :class:`TableSpec` a parsed study file describes, or a :class:`StudyError`."""
    try:
        return _Compiler(raw, source, default_name, yes).spec()
    except StudyError as exc:
        raise StudyError(f"{source}: {exc}") from None


def _unknown_keys(table: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    valid = list(valid)
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
            raise StudyError(f"unknown key {key!r} in {where}{hint}")


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise StudyError(f"{what} must be {_TYPE_WORDS.get(names, names)}, got {value!r}")
    return value


_TYPE_WORDS = {"str": "a string", "int": "an integer", "list": "a list", "dict": "a table"}


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


# --- compiling ----------------------------------------------------------------------------


@dataclass
class _Row:
    variant: str
    label: str
    axes: dict[str, Any]


class _Compiler:
    def __init__(self, raw: Mapping[str, Any], source: str, default_name: str, yes: bool) -> None:
        self.raw, self.source, self.yes = raw, source, yes
        self.default_name = default_name

    def spec(self) -> TableSpec:
        raw = self.raw
        _unknown_keys(raw, _STUDY_KEYS, "the study")
        name = _expect(raw.get("name", self.default_name), str, "name")
        if not STUDY_NAME.fullmatch(name) or name in TABLES:
            raise StudyError(
                f"name {name!r} must be letters, digits, '_', '.' or '-' and not a paper "
                "table's name (it names the study's folder of records)"
            )
        plugins, plugin_paths = self.plugins()
        base, protocols = self.protocols(raw.get("protocol"))
        task_name = self.task(base)
        rows = self.rows()
        reference = self.reference(rows)
        variants = [r.variant for r in rows]
        columns = self.columns(get_task(task_name), base)
        labels = {r.variant: r.label for r in rows}
        notes = tuple(_expect(n, str, "each of notes") for n in _listed(raw.get("notes", [])))
        return TableSpec(
            name=name,
            title=_expect(raw.get("title", f"Study {name}"), str, "title"),
            rows=tuple(variants),
            columns=columns,
            protocols=protocols,
            paper_flops=base.paper_flops if base else "2x_params",
            notes=(*notes, f"Study file: {self.source}."),
            task=task_name,
            sigmas=base.sigmas if base else (),
            save_weights=base.save_weights if base else False,
            claims=self.claims(variants, labels, columns, name, reference),
            labels=labels,
            reference=reference,
            seeds=self.seeds(),
            select=self.select(),
            plugins=plugins,
            plugin_paths=plugin_paths,
            axes={r.variant: r.axes for r in rows if r.axes},
            source=self.source,
        )

    def plugins(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The plugin modules, imported here (before any row names a reduction they add),
        as module names (a ``.py`` path becomes its module: the cells' configs do not depend
        on where the file lies) and the folders they were found in (for workers)."""
        given = tuple(
            _expect(m, str, "each of plugins") for m in _listed(self.raw.get("plugins", []))
        )
        folder = Path(self.source).parent
        load_plugins(given, search_paths=[folder])
        names = tuple(Path(m).stem if m.endswith(".py") else m for m in given)
        paths = [Path(sys.modules[n].__file__ or folder).resolve().parent
                 if m.endswith(".py") else folder.resolve() for m, n in zip(given, names, strict=True)]  # fmt: skip
        return names, tuple(dict.fromkeys(str(p) for p in paths))

    def task(self, base: TableSpec | None) -> str:
        task_name = _expect(self.raw.get("task", base.task if base else ""), str, "task")
        if not task_name:
            raise StudyError('name the task (task = "...") or a protocol = "table:profile"')
        if base is not None and base.task != task_name:
            raise StudyError(
                f"task {task_name!r} does not match {base.name}'s protocol ({base.task})"
            )
        return task_name

    def seeds(self) -> int:
        seeds = _expect(self.raw.get("seeds", 1), int, "seeds")
        if not 1 <= seeds <= MAX_SEEDS:
            raise StudyError(f"seeds must be 1 to {MAX_SEEDS}, got {seeds}")
        return seeds

    def select(self) -> str:
        select = _expect(self.raw.get("select", "mean"), str, "select")
        if select not in SELECT_RULES:
            raise StudyError(f"select {select!r}: choose one of {', '.join(SELECT_RULES)}")
        return select

    # protocol ---------------------------------------------------------------------------

    def protocols(self, raw: Any) -> tuple[TableSpec | None, dict[str, Protocol]]:
        """Each profile's protocol: a paper table's (``"table2"``: all its profiles,
        ``"table2:demo"``: that one) with overrides common to every profile and per profile."""
        if raw is None:
            raise StudyError(
                'no protocol: add protocol = "table2" (a paper table\'s) or a [protocol] table'
            )
        if isinstance(raw, str):
            raw = {"base": raw}
        _expect(raw, dict, "protocol")
        base, common = self._reference(raw.get("base"), "protocol.base")
        overrides = {k: v for k, v in raw.items() if k != "base" and k not in PROFILES}
        protocols: dict[str, Protocol] = {}
        for profile in PROFILES:
            sub = _expect(raw.get(profile, {}), dict, f"protocol.{profile}")
            start = common.get(profile)
            if "base" in sub:
                table, found = self._reference(sub["base"], f"protocol.{profile}.base", profile)
                base = base or table
                start = found.get(profile) or next(iter(found.values()), None)
            fields_ = {**overrides, **{k: v for k, v in sub.items() if k != "base"}}
            if start is None and not sub:
                continue
            protocols[profile] = self._protocol(start, fields_, base, f"protocol.{profile}")
        if not protocols:
            raise StudyError(
                'the protocol gives no profile; name one with protocol = "table2:demo"'
            )
        return base, protocols

    def _reference(
        self, ref: Any, where: str, profile: str | None = None
    ) -> tuple[TableSpec | None, dict[str, Protocol]]:
        """``"table2"`` -> every profile of table2; ``"table2:demo"`` -> its demo one."""
        if ref is None:
            return None, {}
        table_name, _, wanted = _expect(ref, str, where).partition(":")
        if table_name not in TABLES:
            close = difflib.get_close_matches(table_name, TABLES, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(TABLES)}"
            )
            raise StudyError(f"{where}: unknown table {table_name!r}{hint}")
        table = TABLES[table_name]
        if wanted and wanted not in table.protocols:
            raise StudyError(
                f"{where}: {table_name} has no {wanted!r} profile; it has {', '.join(table.protocols)}"
            )
        if wanted:
            return table, {wanted if profile is None else profile: table.protocols[wanted]}
        return table, dict(table.protocols)

    def _protocol(
        self, start: Protocol | None, values: dict[str, Any], base: TableSpec | None, where: str
    ) -> Protocol:
        kind = type(start) if start is not None else (
            get_task(self.raw["task"]).protocol_type if "task" in self.raw else Protocol
        )  # fmt: skip
        names = [f.name for f in fields(kind)]
        _unknown_keys(values, [*names, "base", *PROFILES], f"[{where}]")
        converted = {k: _tupled(v) for k, v in values.items()}
        if start is not None:
            for key, value in converted.items():
                _same_type(getattr(start, key), value, f"{where}.{key}")
            return replace(start, **converted)
        missing = [f.name for f in fields(kind) if f.name in ("dataset", "epochs", "batch_size")
                   and f.name not in converted]  # fmt: skip
        if missing:
            raise StudyError(f"[{where}] has no base and lacks {', '.join(missing)}")
        return kind(**converted)

    # rows -------------------------------------------------------------------------------

    def rows(self) -> list[_Row]:
        found = [
            self._row(r, f"rows[{i}]") for i, r in enumerate(_listed(self.raw.get("rows", [])))
        ]
        if "grid" in self.raw:
            found += self._grid(_expect(self.raw["grid"], dict, "[grid]"))
        if not found:
            raise StudyError("no rows: add rows = [...] or a [grid]")
        return _dedupe(found)

    def _row(self, raw: Any, where: str) -> _Row:
        if isinstance(raw, str):
            try:
                info = variant_info(raw)
            except ValueError as exc:
                raise StudyError(f"{where}: {exc}") from None
            return _Row(raw, info.description, {})
        _expect(raw, dict, where)
        _unknown_keys(raw, _ROW_KEYS, f"{where}")
        arch = self._arch(raw.get("arch"), f"{where}.arch")
        reductions = []
        for j, red in enumerate(_listed(raw.get("reductions", []))):
            _expect(red, dict, f"{where}.reductions[{j}]")
            _unknown_keys(red, _REDUCTION_KEYS, f"{where}.reductions[{j}]")
            for key in ("method", "stride"):
                if key not in red:
                    raise StudyError(f"{where}.reductions[{j}] needs {key!r}")
            reductions.append((red.get("at"), red["method"], red["stride"]))
        row = _structured(arch, reductions, where)
        if "label" in raw:
            row.label = _expect(raw["label"], str, f"{where}.label")
        return row

    def _arch(self, value: Any, where: str) -> str:
        arch = _expect(value, str, where)
        if arch not in _ARCHS:
            raise StudyError(
                f"{where}: structured rows are defined for {', '.join(_ARCHS)}, not {arch!r}; "
                "name a registered variant instead (python -m harness list)"
            )
        return arch

    def _grid(self, grid: dict[str, Any]) -> list[_Row]:
        _unknown_keys(grid, _GRID_KEYS, "[grid]")
        arch_values = [self._arch(a, "[grid] arch") for a in _listed(grid.get("arch"))]
        axes = {
            "at": _listed(grid["at"]) if "at" in grid else [None],
            "method": _listed(grid.get("method", [])),
            "stride": _listed(grid.get("stride", [])),
        }
        for key in ("method", "stride"):
            if key not in grid:
                raise StudyError(f"[grid] needs {key!r} (one value or a list)")
        size = len(arch_values) * math.prod(len(v) for v in axes.values())
        if size == 0:
            empty = [k for k, v in {"arch": arch_values, **axes}.items() if not v]
            raise StudyError(f"the grid is empty: [grid] {', '.join(empty)} has no values")
        if size > MAX_CELLS and not self.yes:
            raise StudyError(
                f"the grid has {size:,} rows (over {MAX_CELLS:,}); pass --yes to plan it anyway"
            )
        excludes = [
            _expect(e, dict, "[grid] exclude entry") for e in _listed(grid.get("exclude", []))
        ]
        for e in excludes:
            _unknown_keys(e, _AXES, "[grid] exclude")
        rows = []
        for arch, at, method, stride in itertools.product(arch_values, *axes.values()):
            point = {"arch": arch, "at": at, "method": method, "stride": stride}
            if any(all(_same_value(point[k], v) for k, v in e.items()) for e in excludes):
                continue
            positions = at if isinstance(at, list) else [at]
            where = f"[grid] point {_point_text(point)}"
            rows.append(_structured(arch, [(p, method, stride) for p in positions], where))
        if not rows:
            raise StudyError(f"the grid is empty: its exclude entries remove all {size} points")
        return rows

    def reference(self, rows: list[_Row]) -> str:
        """The row every other is tested against: ``reference`` (a row's variant name or
        label, or a structured row), else the baseline of the first row's architecture,
        added as the first row when it is not one already."""
        raw = self.raw.get("reference")
        if raw is None:
            arch = variant_info(rows[0].variant).arch
            found = _structured(arch, [], "reference") if arch in _ARCHS else None
            if found is None:
                named = [r.variant for r in rows if r.variant.endswith(".baseline")]
                if not named:
                    raise StudyError('no baseline among the rows: name one with reference = "..."')
                return named[0]
        elif isinstance(raw, str):
            match = [r for r in rows if raw in (r.variant, r.label)]
            found = match[0] if match else self._row(raw, "reference")
        else:
            found = self._row(raw, "reference")
        if found.variant not in [r.variant for r in rows]:
            rows.insert(0, found)
        return found.variant

    def columns(self, task: Any, base: TableSpec | None) -> tuple[str, ...]:
        default = base.columns if base else tuple(m.name for m in task.metrics if not m.per_level)
        columns = tuple(
            _expect(c, str, "each of columns")
            for c in _listed(self.raw.get("columns", list(default)))
        )
        known = [m.name for m in task.metrics]
        for col in columns:
            if find_column(col, task.metrics) is None:
                close = difflib.get_close_matches(col, known, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f"; {task.name} measures {', '.join(known)}"
                )
                raise StudyError(f"unknown column {col!r}{hint}")
        if not columns:
            raise StudyError("columns is empty")
        return columns

    def claims(
        self, variants: list[str], labels: dict[str, str], columns: tuple[str, ...], name: str,
        reference: str,
    ) -> tuple[Claim, ...]:  # fmt: skip
        claims = []
        for i, raw in enumerate(_listed(self.raw.get("claims", []))):
            where = f"claims[{i}]"
            _expect(raw, dict, where)
            _unknown_keys(raw, _CLAIM_KEYS, where)
            for key in ("text", "kind", "rows", "columns"):
                if key not in raw:
                    raise StudyError(f"{where} needs {key!r}")
            if raw["kind"] not in CLAIM_KINDS:
                raise StudyError(
                    f"{where}.kind {raw['kind']!r}: choose one of {', '.join(CLAIM_KINDS)}"
                )
            by_label = {label: v for v, label in labels.items()}
            rows = []
            for row in _listed(raw["rows"]):
                if row == "reference":
                    row = reference
                variant = row if row in variants else by_label.get(row)
                if variant is None:
                    close = difflib.get_close_matches(str(row), variants, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise StudyError(f"{where}: {row!r} is not a row of the study{hint}")
                rows.append(variant)
            cols = tuple(_listed(raw["columns"]))
            for col in cols:
                if col not in columns:
                    raise StudyError(f"{where}: column {col!r} is not among the study's columns")
            bounds = {
                k: float(_expect(raw[k], (int, float), f"{where}.{k}"))
                for k in ("low", "high")
                if k in raw
            }
            try:
                claims.append(Claim(raw["text"], raw.get("source", f"study {name}"), raw["kind"],
                                    tuple(rows), cols, **bounds))  # fmt: skip
            except ValueError as exc:
                raise StudyError(f"{where}: {exc}") from None
        return tuple(claims)


def _structured(arch: str, reductions: list[tuple[Any, Any, Any]], where: str) -> _Row:
    """A structured row's variant (registered under its deterministic name) and label."""
    spec = _ARCHS[arch]
    placed: dict[int | None, Reduction] = {}
    for at, method, stride in reductions:
        _expect(method, str, f"{where}: method")
        _expect(stride, int, f"{where}: stride")
        if spec.positions:
            if at is None:
                raise StudyError(
                    f"{where}: {arch} needs 'at' (a {spec.where}: {_range(spec.positions)})"
                )
            _expect(at, int, f"{where}: at")
            if at not in spec.positions:
                raise StudyError(
                    f"{where}: {arch} has no reduction position {at}; choose {_range(spec.positions)} (after {spec.where} X)"
                )
        elif at is not None:
            raise StudyError(
                f"{where}: {arch} has one reduction point ({spec.where}); leave out 'at'"
            )
        try:
            placed[at] = Reduction(method, stride)
        except ValueError as exc:
            raise StudyError(f"{where}: {exc}") from None
    try:
        kwargs = spec.kwargs(placed)
    except ValueError as exc:
        raise StudyError(f"{where}: {exc}") from None
    name, label, axes = _naming(arch, spec, placed)
    define(name, arch, kwargs, label)
    return _Row(name, variant_info(name).description, axes)


def _naming(
    arch: str, spec: _Arch, placed: dict[int | None, Reduction]
) -> tuple[str, str, dict[str, Any]]:
    """The deterministic name (the registry's where the two coincide: ``vgg16.at2_topk_s4``,
    ``mnist.fp_max_s2``), a label, and the row's grid coordinates."""
    live = {at: r for at, r in sorted(placed.items(), key=lambda p: p[0] or 0) if r.kind != "none"}
    if not live:
        return f"{arch}.baseline", f"{arch} baseline", {"arch": arch, "method": "none"}
    if not spec.positions:
        r = live[None]
        text = f"{r.kind}, stride {r.stride}"
        return (
            f"{arch}.{r.tag}",
            f"{arch} {text}",
            {"arch": arch, "method": r.kind, "stride": r.stride},
        )
    kinds = set(live.values())
    if len(kinds) == 1:
        r = next(iter(kinds))
        at = "".join(str(p) for p in live)
        name = f"{arch}.at{at}_{r.tag}"
        label = f"{arch} {r.kind}, stride {r.stride}, after {spec.where} {'+'.join(map(str, live))}"
        return (
            name,
            label,
            {"arch": arch, "at": "+".join(map(str, live)), "method": r.kind, "stride": r.stride},
        )
    name = f"{arch}." + "_".join(f"at{p}_{r.tag}" for p, r in live.items())
    label = f"{arch} " + "; ".join(
        f"{r.kind} s{r.stride} after {spec.where} {p}" for p, r in live.items()
    )
    return name, label, {"arch": arch}


def _dedupe(rows: list[_Row]) -> list[_Row]:
    """Each model once: rows resolving to a model listed before (the same name, or another
    name for the same architecture and arguments) are dropped, with one warning."""
    seen: dict[tuple[str, str], _Row] = {}
    dropped = []
    for row in rows:
        info = variant_info(row.variant)
        key = (info.arch, kwargs_json(info.kwargs))
        if key in seen:
            dropped.append(row.variant)
        else:
            seen[key] = row
    if dropped:
        names = ", ".join(dict.fromkeys(dropped))
        print(f"warning: {len(dropped)} row(s) resolve to a model listed before ({names}); "
              "each model is run once", file=sys.stderr)  # fmt: skip
    return list(seen.values())


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _same_type(old: Any, new: Any, where: str) -> None:
    """An override has the type of the value it replaces (ints may stand for floats)."""
    if old is None or new is None:
        return
    if isinstance(old, bool) or isinstance(new, bool):
        ok = isinstance(old, bool) and isinstance(new, bool)
    elif isinstance(old, float):
        ok = isinstance(new, int | float)
    else:
        ok = isinstance(new, type(old))
    if not ok:
        raise StudyError(f"{where} must be like {old!r} ({type(old).__name__}), got {new!r}")


def _same_value(value: Any, wanted: Any) -> bool:
    return any(value == w for w in _listed(wanted))


def _point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items() if v is not None)


def _range(positions: tuple[int, ...]) -> str:
    return f"{positions[0]}..{positions[-1]}"


# --- writing ------------------------------------------------------------------------------


def ablation(
    arch: str, *, at: list[int], methods: list[str], strides: list[int], seeds: int,
    name: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The study ``python -m harness ablate`` runs, as the data of a study file."""
    if arch not in _ARCHS:
        raise UserError(f"ablate: unknown architecture {arch!r}; choose one of {', '.join(_ARCHS)}")
    spec = _ARCHS[arch]
    if spec.positions and not at:
        raise UserError(
            f"ablate {arch}: pass --at, positions {_range(spec.positions)} (after {spec.where} X)"
        )
    if not spec.positions and at:
        raise UserError(
            f"ablate {arch}: {arch} has one reduction point ({spec.where}); leave out --at"
        )
    parts = [arch, *(["at" + "-".join(map(str, at))] if at else []), "-".join(methods),
             "s" + "-".join(map(str, strides))]  # fmt: skip
    grid: dict[str, Any] = {"arch": arch}
    if at:
        grid["at"] = at
    grid |= {"method": methods, "stride": strides}
    return {
        "name": name or "ablate_" + "_".join(parts),
        "title": f"Ablation of {arch}: "
        + ", ".join(
            f"{k} {', '.join(map(str, v))}" for k, v in grid.items() if isinstance(v, list)
        ),
        "protocol": spec.table,
        "seeds": seeds,
        "grid": grid,
    }


def study_text(study: Mapping[str, Any], command: str = "") -> str:
    """A study's data as TOML (scalars, lists and one level of tables: all a study needs)."""
    lines = [f"# written by: {command}", ""] if command else []
    tables = {k: v for k, v in study.items() if isinstance(v, dict)}
    lines += [f"{k} = {_toml(v)}" for k, v in study.items() if k not in tables]
    for key, table in tables.items():
        lines += ["", f"[{key}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


__all__ = ["MAX_CELLS", "ablation", "compile_study", "get_spec", "is_study", "load_study",
           "study_text"]  # fmt: skip
