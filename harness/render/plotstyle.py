"""The one look of every figure: sizes for a two-column paper, fonts, colours, saving.

Every figure is drawn on a bare :class:`matplotlib.figure.Figure` with the
non-interactive Agg canvas (no pyplot, no display, no global figure list) inside
:func:`render`, which applies the style, adds the note under the figure and writes a PNG and
a vector PDF atomically. Colours follow the reduction kind (Okabe-Ito, readable
by colour-blind readers), so a method keeps its colour across figures.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import math
import os
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cycler import cycler

from harness.core.lazy import lazy
from harness.store import cache
from harness.store.records import write_output
from registry import Reduction, variant_info

if TYPE_CHECKING:
    import matplotlib
    from matplotlib import figure, layout_engine
    from matplotlib.backends import backend_agg
    from matplotlib.figure import Figure
else:  # imported when the first figure is drawn, not by every command that imports this
    matplotlib, figure = lazy("matplotlib"), lazy("matplotlib.figure")
    backend_agg = lazy("matplotlib.backends.backend_agg")
    layout_engine = lazy("matplotlib.layout_engine")

SINGLE_COLUMN_IN = 3.4  # one column of a two-column paper
DOUBLE_COLUMN_IN = 7.0  # full text width
PNG_DPI = 200
FORMATS = ("png", "pdf")

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#333333")

KIND_COLOURS = {
    "none": "#333333",
    "fp_max": "#0072B2",
    "fp_min": "#56B4E9",
    "topk": "#D55E00",
    "topk_min": "#E69F00",
    "conv": "#009E73",
    "conv1x1": "#CC79A7",
}
KIND_LABELS = {
    "none": "baseline",
    "fp_max": "spatial FP (max)",
    "fp_min": "spatial FP (min)",
    "topk": "top-k FP",
    "topk_min": "top-k FP (min)",
    "conv": "conv reduction",
    "conv1x1": "1×1 conv",
}
STRIDE_MARKERS = {1: "D", 2: "o", 4: "s", 8: "^"}
OTHER_COLOUR = "#999999"  # rows that are not registered variants (e.g. classical methods)
MAP_CMAP = "gray"  # feature maps
HIGHLIGHT = "#D55E00"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "axes.prop_cycle": cycler(color=PALETTE),
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "legend.frameon": False,
    "image.interpolation": "nearest",
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
}


def reduction_of(variant: str) -> Reduction | None:
    """The reduction a registered variant applies (its first, where it has one per position),
    or None for rows that are not variants (a classical method, say)."""
    try:
        kwargs = variant_info(variant).kwargs
    except ValueError:
        return None
    found = [
        r
        for value in kwargs.values()
        for r in (value.values() if isinstance(value, Mapping) else (value,))
        if isinstance(r, Reduction) and r.kind != "none"
    ]
    return found[0] if found else Reduction()


def colour(variant: str) -> str:
    reduction = reduction_of(variant)
    return KIND_COLOURS.get(reduction.kind, OTHER_COLOUR) if reduction else OTHER_COLOUR


def marker(variant: str) -> str:
    reduction = reduction_of(variant)
    return STRIDE_MARKERS.get(reduction.stride, "v") if reduction else "v"


def short_label(variant: str) -> str:
    """``baseline``, ``top-k FP, s=2``: short enough for a legend."""
    reduction = reduction_of(variant)
    if reduction is None or reduction.kind == "none":
        return variant.split(".")[-1] if reduction is None else KIND_LABELS["none"]
    return f"{kind_label(reduction.kind)}, s={reduction.stride}"


def kind_label(kind: str) -> str:
    """A reduction kind's legend label; a plugin's kind is shown by its name."""
    return KIND_LABELS.get(kind, kind)


def new_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    """A figure on the Agg canvas; call inside :func:`render` so the style applies."""
    # padding for tick labels at the ends of axes, which move after the layout is made
    layout = layout_engine.ConstrainedLayoutEngine(w_pad=0.1, h_pad=0.06) if constrained else None
    fig = figure.Figure(figsize=(width, height), layout=layout)
    backend_agg.FigureCanvasAgg(fig)
    return fig


def wrap(text: str, width: float) -> str:
    """Wrap text to ``width`` inches (about 13 characters an inch at 9 pt) in lines of
    even length, so a title never leaves one word alone on its last line."""
    lines = math.ceil(len(text) / int(width * 13))
    chars = math.ceil(len(text) / lines)
    while len(textwrap.wrap(text, chars)) > lines:
        chars += 1
    return textwrap.fill(text, chars)


# The same drawing, the same bytes: a PDF would otherwise carry the time it was saved,
# so a report redrawn elsewhere or later (or checked into git) would differ in that alone.
_NO_DATE = {"pdf": {"CreationDate": None}}


def render(
    draw: Callable[[], tuple[Figure, str]], out_dir: Path, name: str, *, inputs: str | None = None
) -> list[Path]:
    """Draw in the house style, print the note it returns under the figure, write
    ``name``.png and .pdf into ``out_dir``.

    ``inputs`` is a digest of everything ``draw`` reads; given one, files that an earlier
    call drew from the same inputs with the same code and matplotlib, and that nobody
    has changed since (their SHA-256 is kept in :mod:`harness.store.cache`), are left
    as they are and ``draw`` is not called: drawing and saving take a second or more."""
    paths = [Path(out_dir) / f"{name}.{fmt}" for fmt in FORMATS]
    key = None if inputs is None else {
        "inputs": inputs, "name": name, "matplotlib": importlib.metadata.version("matplotlib"),
        "matplotlibrc": _user_rc(), "code": cache.code_fingerprint(),
    }  # fmt: skip
    kept = None if key is None else cache.lookup("figures", key)
    if kept is not None and kept == _digests(paths):
        return paths
    with matplotlib.rc_context(STYLE):
        fig, note = draw()
        if note:  # under everything drawn, legends below the axes included
            fig.draw_without_rendering()  # lays it out without rasterising it
            fig.set_layout_engine("none")  # the layout is done: the note must not move it
            bottom = min(0.0, fig.get_tightbbox().y0 / fig.get_figheight())
            fig.text(0.0, bottom, wrap(note, fig.get_figwidth() * 1.4), fontsize=6, color="0.35",
                     ha="left", va="top", transform=fig.transFigure)  # fmt: skip
        for path in paths:
            buffer = io.BytesIO()
            fmt = path.suffix[1:]
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=_NO_DATE.get(fmt))
            write_output(path, buffer.getvalue())
    if key is not None:
        cache.remember("figures", key, _digests(paths))
    return paths


def _user_rc() -> str:
    """The contents of the matplotlibrc files matplotlib may read its defaults from (the
    working directory's, ``$MATPLOTLIBRC``, the user's), without importing matplotlib."""
    config = os.environ.get("MPLCONFIGDIR") or Path(
        os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "matplotlib"
    )
    candidates = [Path("matplotlibrc"), Path(config, "matplotlibrc")]
    if rc := os.environ.get("MATPLOTLIBRC"):
        candidates += [Path(rc), Path(rc, "matplotlibrc")]
    texts = [f"{p}\n{p.read_text(errors='replace')}" for p in candidates if p.is_file()]
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def _digests(paths: list[Path]) -> dict[str, str] | None:
    """Each file's SHA-256 by name, or None when one is missing or unreadable."""
    try:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    except OSError:
        return None
