"""A study's ablation plot: its metric against the grid axis it sweeps, one line per
reduction method, 95% intervals as bars, the reference row as a dashed line with its
band, and one panel per value of the other swept axis.

The axes come from the study (``TableSpec.axes``: each structured row's ``at``, ``method``
and ``stride``). The x axis is the axis with the most values (stride or position), so
that 5 positions x 4 methods x 3 strides (60 rows) draw as 3 panels of 4 lines of 5
points rather than 60 labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.lazy import lazy
from harness.render.plotstyle import (
    DOUBLE_COLUMN_IN,
    KIND_COLOURS,
    KIND_LABELS,
    PALETTE,
    new_figure,
)

if TYPE_CHECKING:  # the caller passes the report and its facts: no import of the report
    from matplotlib import lines as mlines
    from matplotlib.figure import Figure

    from harness.core.metrics import Column
    from harness.render.report import Report
else:  # imported when a plot is drawn, not when the CLI starts (issue 29)
    mlines = lazy("matplotlib.lines")

_NUMERIC_AXES = ("stride", "at")
_PANELS_PER_LINE = 3


def _order(value: Any) -> tuple[float, str]:
    """Positions (``"2"``, ``"2+4"``) and strides sorted as numbers first."""
    text = str(value)
    head = text.split("+")[0]
    return (float(head) if head.isdigit() else math.inf, text)


@dataclass
class _Layout:
    """What goes where: the points to draw, the x axis, the panels and their values."""

    points: list[tuple[int, dict[str, Any]]]  # (frame row, its grid coordinates)
    x_axis: str
    xs: list[str]
    panel_axis: str | None
    keys: list[tuple[str, str]]  # (architecture, panel value) per panel
    methods: list[str]


def _layout(report: Report, reference: str | None) -> _Layout:
    spec = report.spec
    points = [(i, spec.axes[v]) for i, v in enumerate(report.frame["variant"])
              if v in spec.axes and v != reference and "method" in spec.axes[v]]  # fmt: skip
    values = {
        a: sorted({str(p[a]) for _, p in points if a in p}, key=_order) for a in _NUMERIC_AXES
    }
    swept = sorted((a for a in _NUMERIC_AXES if values[a]), key=lambda a: -len(values[a]))
    if not points or not swept:
        raise ValueError(f"{spec.name} sweeps no position or stride")
    panel_axis = swept[1] if len(swept) > 1 and len(values[swept[1]]) > 1 else None
    panels = values[panel_axis] if panel_axis else [""]
    archs = sorted({p["arch"] for _, p in points})
    return _Layout(
        points, swept[0], values[swept[0]], panel_axis,
        [(a, v) for a in archs for v in panels], list(dict.fromkeys(p["method"] for _, p in points)),
    )  # fmt: skip


def ablation_plot(report: Report, metric: str, shown: Column, reference: str | None) -> Figure:
    """Draw ``metric`` (displayed as ``shown``) against the swept axis, ``reference`` as the
    line to beat; raises ValueError when the study sweeps no position or stride."""
    spec, frame = report.spec, report.frame
    layout = _layout(report, reference)
    ncols = min(len(layout.keys), _PANELS_PER_LINE)
    nrows = math.ceil(len(layout.keys) / ncols)
    fig = new_figure(DOUBLE_COLUMN_IN, 0.9 + 2.1 * nrows)
    # the legend in a row of its own above the panels (a figure legend would meet the title)
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[0.3] + [2.1] * nrows)
    scale, unit = (100, "%") if shown.unit == "fraction" else (1, shown.unit)
    stats = [_column(frame, metric + suffix) * scale for suffix in ("", "_ci95_low", "_ci95_high")]
    colours = {m: KIND_COLOURS.get(m, PALETTE[i % len(PALETTE)])
               for i, m in enumerate(layout.methods)}  # fmt: skip
    variants = list(frame["variant"])
    ref = variants.index(reference) if reference in variants else None
    first = None
    for k, key in enumerate(layout.keys):
        ax = fig.add_subplot(grid[1 + k // ncols, k % ncols], sharey=first)
        first = first or ax
        _panel(ax, layout, key, stats, colours)
        if ref is not None:
            value, low, high = (s[ref] for s in stats)
            ax.axhline(value, color="0.2", linestyle="--", linewidth=0.9)
            if not np.isnan(low):
                ax.axhspan(low, high, color="0.5", alpha=0.15, linewidth=0)
        if k % ncols == 0:
            ax.set_ylabel(f"{shown.header} ({unit})")
    handles = [mlines.Line2D([], [], color=colours[m], marker="o", label=KIND_LABELS.get(m, m))
               for m in layout.methods]  # fmt: skip
    if ref is not None:
        handles.append(mlines.Line2D([], [], color="0.2", linestyle="--",
                              label=f"reference: {spec.row_label(reference)}"))  # fmt: skip
    key = fig.add_subplot(grid[0, :])
    key.axis("off")
    key.legend(handles=handles, loc="center", ncols=min(len(handles), 3), borderaxespad=0)
    return fig


def _panel(
    ax: Any, layout: _Layout, key: tuple[str, str], stats: list[np.ndarray],
    colours: dict[str, str],
) -> None:  # fmt: skip
    """One panel: a line per method over the x axis, with its 95% interval bars."""
    arch, panel = key
    value, low, high = stats
    for offset, method in enumerate(layout.methods):
        mine = sorted((layout.xs.index(str(p[layout.x_axis])), i) for i, p in layout.points
                      if p["method"] == method and p["arch"] == arch
                      and (layout.panel_axis is None or str(p[layout.panel_axis]) == panel))  # fmt: skip
        if not mine:
            continue
        # methods side by side around each x, so that their bars never hide one another
        x = np.array([j for j, _ in mine]) + (offset - (len(layout.methods) - 1) / 2) * 0.06
        y = np.array([value[i] for _, i in mine])
        err = np.array([[value[i] - low[i], high[i] - value[i]] for _, i in mine]).T
        ax.errorbar(x, y, yerr=np.where(np.isnan(err), 0, np.clip(err, 0, None)),
                    color=colours[method], marker="o", capsize=2, markersize=3)  # fmt: skip
    ax.set_xticks(range(len(layout.xs)), layout.xs)
    ax.set_xlabel("stride" if layout.x_axis == "stride" else "position (after block)")
    several = len({a for a, _ in layout.keys}) > 1
    title = f"{arch}, " if several else ""
    if layout.panel_axis:
        what = "stride" if layout.panel_axis == "stride" else "position"
        ax.set_title(f"{title}{what} {panel}")
    elif several:
        ax.set_title(arch)


def _column(frame: Any, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(dtype=float, na_value=np.nan)
