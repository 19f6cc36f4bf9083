"""The variant registry: architectures by name, and named variants of them.

An *architecture* is a builder function registered with :func:`register_arch`.
A *variant* is data: an architecture, the keyword arguments that configure it and
metadata (what it is, which row of which paper table it reproduces and the numbers
the paper prints there). Variants are declared with :func:`register_variant`;
names follow ``arch.tag`` and are matched with fnmatch patterns.

Installed packages add variants and reduction kinds without editing this package:
a module they declare as an entry point of group ``harness.variants`` or
``harness.reductions`` is imported (so its decorators run) the first time a name is
listed or looked up and not found.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # metadata is read without torch (``list``, ``report``); builders need it
    from torch import nn

__all__ = [
    "PaperRow",
    "VariantInfo",
    "create_model",
    "list_archs",
    "list_variants",
    "load_entry_points",
    "loaded_entry_points",
    "printed_value",
    "register_arch",
    "register_variant",
    "variant_info",
]

Builder = Callable[..., "nn.Module"]

_ARCHS: dict[str, Builder] = {}
_VARIANTS: dict[str, VariantInfo] = {}

ENTRY_POINT_GROUPS = ("harness.reductions", "harness.variants")
_IMPORTED: set[str] = set()  # entry point values imported, or being imported, here
_SCANNED: list[tuple[str, ...]] = []  # the sys.path entry points were last looked up on


def load_entry_points(announce: Callable[[list[str]], None] | None = None) -> list[str]:
    """Import the modules installed packages declare under :data:`ENTRY_POINT_GROUPS`,
    each once per process, and return the newly imported ones. The installed packages
    are looked up again only when ``sys.path`` has changed. ``announce`` is called with
    the modules before they are imported. ImportError names the entry point that fails
    (its cause is the module's own error) and it is tried again at the next call."""
    if _SCANNED and _SCANNED[-1] == tuple(sys.path):
        return []
    _SCANNED[:] = [tuple(sys.path)]
    installed = importlib.metadata.entry_points()  # one look at the installed packages
    found = [e for group in ENTRY_POINT_GROUPS for e in installed.select(group=group)]
    entries = list({e.value: e for e in found if e.value not in _IMPORTED}.values())
    if entries and announce is not None:
        announce([e.value for e in entries])
    for entry in entries:
        _IMPORTED.add(entry.value)
        try:
            entry.load()
        except Exception as exc:
            _IMPORTED.discard(entry.value)
            _SCANNED.clear()
            raise ImportError(
                f"entry point {entry.name} = {entry.value} ({entry.group}) failed to import: "
                f"{type(exc).__name__}: {exc}",
                name=entry.value,
            ) from exc
    return [e.value for e in entries]


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: its label and the values exactly as printed.

    Values are kept as text (``"12.260"``, ``"2.571e7"``, ``"93.25%"``) so that the
    printed precision survives; :func:`printed_value` turns one into a number.
    ``block`` names the part of a table a row belongs to when the table repeats its
    rows per test set (Table 6: ``"bsd500"`` and ``"tid2008"``).
    """

    table: str
    row: str
    values: Mapping[str, str] = field(default_factory=dict)
    block: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def psnr(cls, table: str, row: str, printed: Mapping[int, str], block: str = "") -> PaperRow:
        """A row of PSNRs by noise level, ``{sigma: printed}`` (gaps are simply left out)."""
        return cls(table, row, {f"psnr_sigma{s}": v for s, v in printed.items()}, block)

    def number(self, column: str) -> float:
        return printed_value(self.values[column])[0]


@dataclass(frozen=True)
class VariantInfo:
    """Everything known about a named variant besides its weights."""

    name: str
    arch: str
    kwargs: Mapping[str, Any]
    description: str = ""
    paper: tuple[PaperRow, ...] = ()

    @property
    def in_paper(self) -> bool:
        return bool(self.paper)

    def paper_row(self, table: str, block: str | None = None) -> PaperRow | None:
        """The paper's row in ``table`` (in ``block`` when given, else its first block)."""
        return next((p for p in self.paper if p.table == table and block in (None, p.block)), None)


def loaded_entry_points() -> list[str]:
    """The entry points imported in this process (``module:attr``): the installed code
    that may have registered variants and reductions (a cache keys on its source)."""
    return sorted(_IMPORTED)


def printed_value(text: str) -> tuple[float, float]:
    """A printed number and one unit of its last printed digit.

    ``"12.260"`` -> (12.26, 0.001); ``"2.571e7"`` -> (25710000.0, 10000.0);
    ``"93.25%"`` -> (0.9325, 0.0001), percentages becoming fractions.
    """
    scale = Decimal(1)
    text = text.strip()
    if text.endswith("%"):
        text, scale = text[:-1], Decimal("0.01")
    number = Decimal(text)
    unit = Decimal(1).scaleb(number.as_tuple().exponent)
    return float(number * scale), float(unit * scale)


def register_arch(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering an architecture builder under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHS[name] = builder
        return builder

    return decorate


def register_variant(
    name: str,
    arch: str,
    *,
    description: str = "",
    paper: tuple[PaperRow, ...] | list[PaperRow] = (),
    **kwargs: Any,
) -> VariantInfo:
    """Declare a named variant of a registered architecture."""
    if name in _VARIANTS:
        raise ValueError(f"variant {name!r} is already registered")
    if arch not in _ARCHS:
        raise ValueError(f"variant {name!r} names unknown architecture {arch!r}")
    info = VariantInfo(name, arch, MappingProxyType(dict(kwargs)), description, tuple(paper))
    _VARIANTS[name] = info
    return info


def list_variants(pattern: str = "*") -> list[str]:
    """Registered variant names matching an fnmatch ``pattern``, sorted."""
    load_entry_points()
    return sorted(n for n in _VARIANTS if fnmatch.fnmatchcase(n, pattern))


def list_archs() -> list[str]:
    load_entry_points()
    return sorted(_ARCHS)


def variant_info(name: str) -> VariantInfo:
    if name not in _VARIANTS:
        load_entry_points()
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ValueError(unknown_name("variant", name, _VARIANTS)) from None


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a variant (or a bare architecture) by name; ``overrides`` win over its kwargs."""
    if name not in _VARIANTS and name not in _ARCHS:
        load_entry_points()
    if name in _VARIANTS:
        info = _VARIANTS[name]
        return _ARCHS[info.arch](**{**info.kwargs, **overrides})
    if name in _ARCHS:
        return _ARCHS[name](**overrides)
    raise ValueError(unknown_name("variant or architecture", name, {**_VARIANTS, **_ARCHS}))


def unknown_name(what: str, name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(known))}"
    )
    return f"unknown {what} {name!r}{hint}"
